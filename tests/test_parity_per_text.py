"""Per-text thresholds, prompts and examples, and retrieval-augmented examples, as the reference takes
them: each text's scores equal the reference's for that text alone (batch_size=1), and a text's scores do
not depend on the options of the texts beside it."""

from __future__ import annotations

import pytest
from test_parity import SHAPE_VARIANTS, assert_same_scores, build_pair, scores_of

from gliclass_pipelines import ClassifyConfig, ConfigError
from gliclass_pipelines.core.per_text import augmented_text
from gliclass_pipelines.testing.checkpoints import variant_id

LABELS = ["libraries", "games", "science", "networking"]
PROMPTS = ["Classify the package description:", None, "Which topic is this?"]
EXAMPLES = [
    [{"text": "An arcade game with lasers.", "labels": ["games"]}],
    None,
    [{"text": "A physics simulation toolkit.", "labels": ["science"]}],
]
RAC = [
    [{"text": "A chess engine.", "true_labels": ["games"], "all_labels": ["games", "science"]}],
    [],
    [
        {"text": "An HTTP client.", "true_labels": ["networking"], "all_labels": ["networking", "games"]},
        {"text": "No label here.", "true_labels": [], "all_labels": ["games"]},
    ],
]


@pytest.fixture(scope="module", params=SHAPE_VARIANTS, ids=variant_id)
def pair(request, checkpoint_factory):
    return build_pair(request.param, checkpoint_factory)


@pytest.fixture(scope="module")
def rows(debian_texts):
    return [t for t in debian_texts if 20 < len(t.split()) < 80][:3]


def alone(reference, rows, **per_text):
    """The reference's results for each text on its own, each option its value for that text."""
    pipeline = reference()
    return [
        pipeline([text], LABELS, batch_size=1, **{k: v[i] for k, v in per_text.items()})[0]
        for i, text in enumerate(rows)
    ]


def test_a_threshold_per_text(pair, rows):
    ours, reference, _ = pair
    thresholds = [0.0, 1.0, 0.5]
    mine = ours.classify(rows, LABELS, threshold=thresholds)
    theirs = reference()(rows, LABELS, threshold=thresholds, batch_size=1)
    assert mine[1] == [] and len(mine[0]) == len(LABELS)
    assert [sorted(scores_of(r)) for r in mine] == [sorted(scores_of(r)) for r in theirs]
    assert_same_scores(mine, theirs)


def test_a_prompt_and_examples_per_text(pair, rows):
    ours, reference, _ = pair
    mine = ours.classify(rows, LABELS, threshold=0.0, prompt=PROMPTS, examples=EXAMPLES)
    theirs = alone(reference, rows, prompt=PROMPTS, examples=EXAMPLES, threshold=[0.0] * 3)
    assert_same_scores(mine, theirs)
    shared = ours.classify(rows, LABELS, threshold=0.0)
    assert scores_of(mine[1]) == pytest.approx(scores_of(shared[1]), abs=1e-6)  # row 1 has neither
    assert scores_of(mine[0]) != pytest.approx(scores_of(shared[0]), abs=1e-6)


def test_retrieval_augmented_examples_per_text(pair, rows):
    ours, reference, _ = pair
    mine = ours.classify(rows, LABELS, threshold=0.0, rac_examples=RAC)
    theirs = reference()(rows, LABELS, threshold=0.0, batch_size=1, rac_examples=RAC)
    assert_same_scores(mine, theirs)


def test_retrieval_augmented_text_is_the_references(rows):
    from gliclass.utils import retrieval_augmented_text

    for examples in RAC:
        assert augmented_text(rows[0], examples) == retrieval_augmented_text(rows[0], examples)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"threshold": [0.5, 0.5]}, "threshold: got 2 values for 3 texts"),
        ({"threshold": [0.5, 2.0, 0.5]}, "threshold of text 1"),
        ({"prompt": ["a"]}, "prompt: got 1 values"),
        ({"rac_examples": [[{"text": 1}], [], []]}, "retrieval-augmented example"),
        ({"rac_examples": "text"}, "rac_examples must be a list"),
    ],
)
def test_per_text_options_of_the_wrong_length_or_type_are_refused(pair, rows, options, match):
    with pytest.raises(ConfigError, match=match):
        pair[0].classify(rows, LABELS, **options)


def test_a_label_description_in_the_prompt_is_the_references(pair, rows):
    """The README's way to give label descriptions: `label: description` sentences as the prompt."""
    ours, reference, _ = pair
    described = "games: software to play. science: research and simulation tools."
    mine = ours.classify(rows, LABELS, threshold=0.0, prompt=described)
    theirs = reference()(rows, LABELS, threshold=0.0, batch_size=1, prompt=described)
    assert_same_scores(mine, theirs)
    assert scores_of(mine[0]) != pytest.approx(scores_of(ours.classify(rows[:1], LABELS, threshold=0.0)[0]))


def test_prompt_and_threshold_cells_of_an_engine_are_the_references(pair, rows):
    """Engines pass a prompt and a threshold column: a null cell takes the job's, a bad cell fails only its
    row (with its reason), and every other row scores as the reference scores it alone."""
    ours, reference, _ = pair
    config = ClassifyConfig(model=str(ours.source), labels=LABELS, threshold=0.0, output="scores")
    texts = [*rows, rows[0]]
    prompts = [PROMPTS[0], None, PROMPTS[2], 7]
    thresholds = [0.0, float("nan"), 1.0, 0.5]
    records, out = config.classify(texts, row_prompts=prompts, row_thresholds=thresholds, classifier=ours)
    assert [o.kind for o in out.outcomes] == ["ok", "ok", "ok", "failed"]
    assert out.outcomes[3].code == "invalid_option" and "prompt must be a str" in out.outcomes[3].reason
    assert records[3] is None and out.stats.failed == 1
    theirs = alone(reference, rows, prompt=PROMPTS, threshold=[0.0] * 3)
    for record, result in zip(records[:3], theirs):
        assert record == pytest.approx(scores_of(result), abs=1e-5)
    labelled, _ = config.with_(output="labels").classify(
        rows, row_thresholds=[None, 1.0, 0.0], classifier=ours
    )
    assert labelled[1] == [] and len(labelled[0]) == len(labelled[2]) == len(LABELS)
