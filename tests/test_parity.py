"""Every label's score equals the reference pipeline's at batch_size=1, on every tiny-checkpoint variant."""

from __future__ import annotations

import pytest
from coverage_support import combination_key, record

from gliclass_pipelines import Classifier, Taxonomy
from gliclass_pipelines.testing.checkpoints import VARIANTS, variant_id

TOL = 1e-5
LABELS = ["libraries", "games", "science", "networking", "python modules"]
ROW_LABELS = [["games", "sound"], ["libs", "devel", "x11", "web"], ["science"], ["python", "perl", "ruby"]]
PROMPT = "Classify the package description:"
EXAMPLES = [{"text": "An arcade game with lasers.", "labels": ["games"]}]


def variant_params(variant: dict) -> dict:
    return dict(variant)


def build_pair(variant: dict, checkpoint_factory):
    """(ours, the reference pipeline, the variant) for one checkpoint variant."""
    from gliclass import GLiClassModel, ZeroShotClassificationPipeline
    from transformers import AutoTokenizer

    path = checkpoint_factory(**variant_params(variant))
    ours = Classifier.load(str(path), device="cpu")
    model = GLiClassModel.from_pretrained(str(path))
    tokenizer = AutoTokenizer.from_pretrained(str(path))

    def reference(classification_type: str = "multi-label") -> ZeroShotClassificationPipeline:
        return ZeroShotClassificationPipeline(
            model,
            tokenizer,
            max_length=ours.max_length,
            device="cpu",
            progress_bar=False,
            classification_type=classification_type,
        )

    return ours, reference, variant


@pytest.fixture(scope="module", params=VARIANTS, ids=variant_id)
def pair(request, checkpoint_factory):
    return build_pair(request.param, checkpoint_factory)


# label shapes mean the same for every variant: one uni-encoder and one bi-encoder check them
SHAPE_VARIANTS = [
    next(v for v in VARIANTS if v["architecture"] == kind) for kind in ("uni-encoder", "bi-encoder")
]


@pytest.fixture(scope="module", params=SHAPE_VARIANTS, ids=variant_id)
def shape_pair(request, checkpoint_factory):
    return build_pair(request.param, checkpoint_factory)


@pytest.fixture(scope="module")
def texts(debian_texts):
    short = [t for t in debian_texts if 20 < len(t.split()) < 120][:5]
    return [*short, "A tiny arcade game.", "Tools for the Python language"]


def scores_of(result: list[dict]) -> dict[str, float]:
    return {item["label"]: item["score"] for item in result}


def assert_same_scores(ours: list, theirs: list) -> None:
    assert len(ours) == len(theirs)
    for mine, ref in zip(ours, theirs):
        mine, ref = scores_of(mine), scores_of(ref)
        assert mine.keys() == ref.keys()
        for label in ref:
            assert mine[label] == pytest.approx(ref[label], abs=TOL), label


def test_multi_label_shared_labels(pair, texts, request):
    ours, reference, variant = pair
    theirs = reference()(texts, LABELS, threshold=0.0, batch_size=1)
    mine = ours.classify(texts, LABELS, threshold=0.0)
    difference = max(abs(scores_of(m)[k] - v) for m, t in zip(mine, theirs) for k, v in scores_of(t).items())
    key = combination_key(variant["architecture"], variant["scorer"], variant["pooling"])
    record(key, "parity", difference, request.node.nodeid.split("[")[0])
    assert_same_scores(mine, theirs)
    spread = [max(scores_of(r).values()) - min(scores_of(r).values()) for r in mine]
    assert max(spread) > 0.01, "scores do not differ across labels: the parity test could not fail"


def test_multi_label_threshold_keeps_the_same_labels(pair, texts):
    ours, reference, _ = pair
    theirs = reference()(texts, LABELS, threshold=0.5, batch_size=1)
    mine = ours.classify(texts, LABELS, threshold=0.5)
    assert [sorted(scores_of(r)) for r in mine] == [sorted(scores_of(r)) for r in theirs]


def test_single_label(pair, texts):
    ours, reference, _ = pair
    theirs = reference("single-label")(texts, LABELS, batch_size=1)
    mine = ours.classify(texts, LABELS, multi_label=False)
    for m, t in zip(mine, theirs):
        assert len(m) == 1 and m[0]["label"] == t[0]["label"]
        assert m[0]["score"] == pytest.approx(t[0]["score"], abs=TOL)


def test_per_text_labels(pair, texts):
    ours, reference, variant = pair
    rows = texts[: len(ROW_LABELS)]
    mine = ours.classify(rows, ROW_LABELS, threshold=0.0)
    if variant.get("architecture", "uni-encoder") == "bi-encoder":
        # The reference pads per-text bi-encoder labels to max_length; the per-text answer is defined as
        # the answer for that text alone with its labels shared.
        theirs = [
            reference()([t], labels, threshold=0.0, batch_size=1)[0] for t, labels in zip(rows, ROW_LABELS)
        ]
    else:
        theirs = reference()(rows, ROW_LABELS, threshold=0.0, batch_size=1)
    assert_same_scores(mine, theirs)


def test_prompt_and_examples(pair, texts):
    ours, reference, _ = pair
    theirs = reference()(texts, LABELS, threshold=0.0, batch_size=1, prompt=PROMPT, examples=EXAMPLES)
    taxonomy = Taxonomy.from_labels(LABELS, prompt=PROMPT, examples=EXAMPLES)
    assert_same_scores(ours.classify(texts, taxonomy, threshold=0.0), theirs)


def test_hierarchical_taxonomy(pair, texts):
    ours, reference, _ = pair
    hierarchy = {"software": ["library", "game"], "topic": {"science": ["physics", "biology"]}}
    theirs = reference()(texts, hierarchy, threshold=0.0, batch_size=1)
    assert_same_scores(ours.classify(texts, Taxonomy.from_labels(hierarchy), threshold=0.0), theirs)


def test_rows_with_different_label_counts_in_one_batch(pair, debian_texts):
    """Each row's scores are its scores alone, whatever label counts its batch neighbours have."""
    ours, reference, variant = pair
    text = next(t for t in debian_texts if 60 < len(t.split()) < 90)
    rows = [text] * len(ROW_LABELS)  # same text: the rows differ by their label sets only
    out = ours.run(rows, ROW_LABELS, threshold=0.0, batch_tokens=100_000)
    assert out.stats.batches == 1
    pipeline = reference()
    theirs = [pipeline([text], labels, threshold=0.0, batch_size=1)[0] for labels in ROW_LABELS]
    assert_same_scores(out.results, theirs)


HIERARCHIES = [
    {"software": ["library", "game"]},
    {"topic": {"science": ["physics", "biology"]}, "os": ["linux"]},
]


def test_a_list_of_mappings_is_one_hierarchy_per_text(shape_pair, texts):
    ours, reference, variant = shape_pair
    rows = texts[:2]
    mine = ours.classify(rows, HIERARCHIES, threshold=0.0)
    assert [len(r) for r in mine] == [2, 3]
    if variant.get("architecture", "uni-encoder") == "bi-encoder":  # see test_per_text_labels
        pipeline = reference()
        theirs = [pipeline([t], h, threshold=0.0, batch_size=1)[0] for t, h in zip(rows, HIERARCHIES)]
    else:
        theirs = reference()(rows, HIERARCHIES, threshold=0.0, batch_size=1)
    assert_same_scores(mine, theirs)


def test_a_list_of_lists_of_mappings_flattens_each_row(shape_pair, texts):
    """The reference takes the shape, then fails on it (it keeps the mappings as labels: the uni-encoder
    cannot hash them, the bi-encoder cannot tokenize them); here each row's list is flattened, its
    mappings' groups in order."""
    ours, reference, _ = shape_pair
    rows, per_row = texts[:2], [[HIERARCHIES[0]], [HIERARCHIES[1], {"misc": ["other"]}]]
    pipeline = reference()
    with pytest.raises((TypeError, ValueError), match="unhashable|text input must be of type"):
        pipeline(rows, per_row, threshold=0.0, batch_size=1)
    flat = [["software.library", "software.game"], ["topic.science.physics", "topic.science.biology",
            "os.linux", "misc.other"]]  # fmt: skip
    theirs = [pipeline([t], labels, threshold=0.0, batch_size=1)[0] for t, labels in zip(rows, flat)]
    assert_same_scores(ours.classify(rows, per_row, threshold=0.0), theirs)
