"""Core behaviour: batch invariance, labels never truncated, long texts, label groups, nulls, OOM."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gliclass_pipelines import Classifier, ConfigError, Taxonomy
from gliclass_pipelines.core.batching import cut_batches, deduplicate, default_batch_tokens, restore
from gliclass_pipelines.core.encoding import (
    DEFAULT_MAX_LENGTH,
    estimate_label_tokens,
    estimate_tokens,
    text_token_cap,
)
from gliclass_pipelines.core.label_plan import labels_for_rows
from gliclass_pipelines.core.outcomes import RowOutcome, RunStats

LABELS = ["libraries", "games", "science", "networking"]


@pytest.fixture(scope="module")
def avg_clf(checkpoint_factory) -> Classifier:
    return Classifier.load(str(checkpoint_factory(pooling="avg", prompt_first=False)), device="cpu")


@pytest.fixture(scope="module")
def first_clf(checkpoint_factory) -> Classifier:
    return Classifier.load(str(checkpoint_factory(backbone="deberta-v2", pooling="first")), device="cpu")


def all_scores(clf: Classifier, texts, labels=LABELS, **kw) -> list[dict[str, float] | None]:
    results = clf.classify(texts, labels, return_all=True, **kw)
    return [None if r is None else {x["label"]: x["score"] for x in r} for r in results]


def assert_close(got: list[dict], want: list[dict]) -> None:
    assert {x["label"] for x in got} == {x["label"] for x in want}
    want_scores = {x["label"]: x["score"] for x in want}
    for x in got:
        assert x["score"] == pytest.approx(want_scores[x["label"]], abs=1e-5)


@pytest.mark.parametrize("which", ["avg_clf", "first_clf"])
def test_batch_invariance(which, request, debian_texts):
    clf = request.getfixturevalue(which)
    pool = debian_texts[:24]
    alone = {t: all_scores(clf, [t])[0] for t in pool}

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        picks=st.lists(st.integers(0, len(pool) - 1), min_size=1, max_size=12),
        batch_tokens=st.sampled_from([64, 300, 1000, 4096, 100000]),
    )
    def check(picks, batch_tokens):
        texts = [pool[i] for i in picks]
        for text, got in zip(texts, all_scores(clf, texts, batch_tokens=batch_tokens)):
            for label, score in alone[text].items():
                assert got[label] == pytest.approx(score, abs=1e-5)

    check()


def test_results_keep_input_order_and_nulls(first_clf, debian_texts):
    texts = [debian_texts[0], None, "", "   ", float("nan"), debian_texts[1], debian_texts[0]]
    out = first_clf.run(texts, LABELS, threshold=0.0)
    assert [r is None for r in out.results] == [False, True, True, True, True, False, False]
    assert out.results[0] == out.results[6]
    assert_close(out.results[0], first_clf.classify([debian_texts[0]], LABELS, threshold=0.0)[0])
    assert_close(out.results[5], first_clf.classify([debian_texts[1]], LABELS, threshold=0.0)[0])
    assert out.stats.null_inputs == 4 and out.stats.duplicates == 1 and out.stats.ok == 3
    assert [o.kind for o in out.outcomes] == ["ok"] + ["null_input"] * 4 + ["ok", "ok"]
    assert out.outcomes[1] == RowOutcome.null_input("null text", "null_text")
    assert out.outcomes[2].reason == "blank text" and out.stats.reasons == {"null_text": 2, "blank_text": 2}


def test_run_stats_add_and_round_trip():
    a, b = (
        RunStats(model_loads=1, model_load_seconds=0.5),
        RunStats(batches=2, real_tokens=90, padded_tokens=100),
    )
    for outcome in (RowOutcome.ok(), RowOutcome.failed("bad", "invalid_labels"), RowOutcome.null_input("x")):
        a.count(outcome, truncated=outcome.is_ok)
    total = RunStats().add(a).add(b).add(RunStats(model_loads=1, model_load_seconds=0.25))
    assert (total.rows, total.ok, total.failed, total.null_inputs, total.truncated) == (3, 1, 1, 1, 1)
    assert total.reasons == {"invalid_labels": 1, "null_input": 1} and total.padding_efficiency == 0.9
    assert (total.model_loads, total.model_load_seconds) == (2, 0.75)
    assert RunStats.from_dict(total.as_dict()) == total and dict(total)["batches"] == 2
    assert dict(total)["model_loads"] == 2 and "model_load_seconds" not in dict(total)  # integers only
    with pytest.raises(ValueError):
        RunStats.from_dict({"rowz": 1})
    with pytest.raises(ValueError):
        RowOutcome("ok", "a reason")


def test_sorted_by_descending_score_and_thresholds(first_clf, debian_texts):
    taxonomy = Taxonomy.from_labels(LABELS, thresholds={"games": 0.0, "science": 1.0})
    for result in first_clf.classify(debian_texts[:10], taxonomy, threshold=0.5):
        scores = [x["score"] for x in result]
        assert scores == sorted(scores, reverse=True)
        labels = {x["label"] for x in result}
        assert "games" in labels and "science" not in labels


def test_single_label_keeps_the_top_one(first_clf, debian_texts):
    full = first_clf.classify(debian_texts[:5], LABELS, multi_label=False, return_all=True)
    top = first_clf.classify(debian_texts[:5], LABELS, multi_label=False)
    for f, t in zip(full, top):
        assert t == f[:1]
        assert sum(x["score"] for x in f) == pytest.approx(1.0)


def long_text(debian_texts) -> str:
    return " ".join(debian_texts[:60])


def test_labels_are_never_truncated_text_first(checkpoint_factory, debian_texts):
    """Regression: with prompt_first=False the reference cuts the labels off a long text (every score 0.5)."""
    from gliclass import GLiClassModel, ZeroShotClassificationPipeline
    from transformers import AutoTokenizer

    path = checkpoint_factory(prompt_first=False, scorer="simple")
    clf = Classifier.load(str(path), device="cpu")
    text = long_text(debian_texts)
    reference = ZeroShotClassificationPipeline(
        GLiClassModel.from_pretrained(str(path)),
        AutoTokenizer.from_pretrained(str(path)),
        max_length=clf.max_length,
        device="cpu",
        progress_bar=False,
    )
    theirs = reference([text], LABELS, threshold=0.0, batch_size=1)[0]
    # The label tokens were cut off: every label gets the same score (0.5 with zero projector biases).
    assert len({x["score"] for x in theirs}) == 1
    out = clf.run([text], LABELS, threshold=0.0, return_all=True)
    assert out.truncated == [True] and out.stats["truncated"] == 1
    ours = [x["score"] for x in out.results[0]]
    assert max(ours) - min(ours) > 1e-3


def test_truncate_equals_the_cut_text(first_clf, debian_texts):
    text = long_text(debian_texts)
    tokens = first_clf.tokenizer(text, add_special_tokens=False)["input_ids"]
    plan = first_clf.prepare(LABELS)
    group = plan.groups[0]
    budget = first_clf.encoder.budget(group)
    cut = first_clf.tokenizer.decode(tokens[: budget - 8])
    long_scores = all_scores(first_clf, [text])[0]
    assert long_scores.keys() == set(LABELS)
    assert first_clf.run([cut], LABELS).truncated == [False]


def test_chunk_policy_combines_windows_by_max(first_clf, debian_texts):
    text = long_text(debian_texts)
    truncated = all_scores(first_clf, [text])[0]
    chunked_out = first_clf.run([text], LABELS, return_all=True, long_text="chunk", chunk_overlap=32)
    chunked = {x["label"]: x["score"] for x in chunked_out.results[0]}
    assert chunked_out.truncated == [True]
    assert all(chunked[label] >= truncated[label] - 1e-6 for label in LABELS)
    assert any(chunked[label] > truncated[label] + 1e-6 for label in LABELS)


def test_large_taxonomy_is_split_into_groups_like_separate_runs(checkpoint_factory, debian_texts):
    clf = Classifier.load(str(checkpoint_factory()), device="cpu", max_length=64)
    labels = [f"label number {i} of many" for i in range(40)]
    plan = clf.prepare(labels)
    assert len(plan.groups) > 1
    texts = debian_texts[:4]
    together = all_scores(clf, texts, labels)
    for group in plan.groups:
        alone = all_scores(clf, texts, list(group.labels))
        for row_all, row_alone in zip(together, alone):
            for label, score in row_alone.items():
                assert row_all[label] == pytest.approx(score, abs=1e-5)


def test_a_label_too_long_for_any_sequence_is_a_config_error(checkpoint_factory):
    clf = Classifier.load(str(checkpoint_factory()), device="cpu", max_length=64)
    with pytest.raises(ConfigError, match="tokens"):
        clf.prepare(["word " * 80])


def test_per_row_labels_null_and_empty(first_clf, debian_texts):
    out = first_clf.run(debian_texts[:4], [["games", "libs"], None, [], ["games", ""]], threshold=0.0)
    assert len(out.results[0]) == 2
    assert out.results[1] == [] and out.results[2] == []
    assert out.results[3] is None and "invalid labels" in out.outcomes[3].reason
    assert out.stats["failed"] == 1


def test_padding_efficiency_of_sorted_token_budget_batches(first_clf, debian_texts):
    out = first_clf.run(debian_texts[:300], LABELS, batch_tokens=4096)
    assert out.stats["real_tokens"] / out.stats["padded_tokens"] >= 0.9


def test_oom_halves_the_batch_with_identical_results(first_clf, debian_texts, monkeypatch):
    texts = debian_texts[:16]
    expected = first_clf.classify(texts, LABELS, return_all=True, batch_tokens=100000)
    real_forward = first_clf.forward

    def forward_with_small_memory(batch):
        if len(batch.sequences) > 3:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return real_forward(batch)

    monkeypatch.setattr(first_clf, "forward", forward_with_small_memory)
    out = first_clf.run(texts, LABELS, return_all=True, batch_tokens=100000)
    big_batches = [b for b in first_clf.batches(texts, LABELS, batch_tokens=100000) if len(b.sequences) > 3]
    assert big_batches and out.stats["oom_splits"] >= len(big_batches)
    for got, want in zip(out.results, expected):
        assert_close(got, want)


@pytest.mark.parametrize(
    "kwargs",
    [{"threshold": 1.5}, {"threshold": -0.1}, {"long_text": "split"}, {"batch_tokens": 0}],
)
def test_bad_options_are_config_errors(first_clf, kwargs):
    with pytest.raises(ConfigError):
        first_clf.run(["text"], LABELS, **kwargs)


def test_per_row_label_count_must_match(first_clf):
    with pytest.raises(ConfigError, match="per-row"):
        first_clf.classify(["a", "b"], [["x"]])


# ------------------------------------------------------------------------------------------------------
# Batch planning: pure functions, no model


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 600), max_size=80),
    budget=st.integers(1, 5000),
    max_rows=st.integers(1, 40),
)
def test_cut_batches_covers_every_sequence_once_within_the_limits(lengths, budget, max_rows):
    cuts = cut_batches(lengths, budget, max_rows)
    assert sorted(i for cut in cuts for i in cut) == list(range(len(lengths)))
    flat = [lengths[i] for cut in cuts for i in cut]
    assert flat == sorted(lengths)
    for cut in cuts:
        padded = len(cut) * max(lengths[i] for i in cut)
        assert len(cut) <= max_rows
        assert len(cut) == 1 or padded <= budget
        assert len(cut) == 1 or sum(lengths[i] for i in cut) >= 0.9 * padded - 1e-9


def test_cut_batches_closes_a_batch_before_too_much_padding():
    assert cut_batches([10, 10, 10, 100], budget=10_000) == [[0, 1, 2], [3]]
    assert cut_batches([5, 5, 5, 5], budget=10) == [[0, 1], [2, 3]]
    assert cut_batches([11, 10, 10], budget=100, max_rows=2) == [[1, 2], [0]]


def test_deduplicate_and_restore_keep_row_order():
    keys = ["a", None, "b", "a", None, "b", "c"]
    firsts, slots = deduplicate(keys)
    assert firsts == [0, 2, 6] and slots == [0, None, 1, 0, None, 1, 2]
    values = [f"result of {keys[i]}" for i in firsts]
    assert restore(values, slots) == [None if k is None else f"result of {k}" for k in keys]


def test_default_batch_tokens_by_device():
    assert default_batch_tokens("cpu") == default_batch_tokens(torch.device("cpu")) == 1024
    assert default_batch_tokens("cuda:1") == default_batch_tokens(torch.device("cuda", 0)) == 65536


def test_estimates_and_row_labels_fallback():
    assert estimate_tokens("x" * 40) == 11 and estimate_tokens("x" * 40_000, cap=512) == 512
    assert estimate_tokens(None) == 1 and estimate_label_tokens(["sports", "ai"]) == 2 + 1 + 1 + 1
    assert text_token_cap(None, "truncate") == DEFAULT_MAX_LENGTH and text_token_cap(64, "chunk") is None
    shared = Taxonomy.from_labels(LABELS)
    assert labels_for_rows([["a"], None, float("nan")], shared) == [["a"], shared, shared]
    assert labels_for_rows([["a"], None]) == [["a"], None]


def test_row_labels_fall_back_to_the_shared_labels(first_clf, debian_texts):
    texts = debian_texts[:3]
    out = first_clf.run(texts, LABELS, row_labels=[["games", "science"], None, []], return_all=True)
    shared = first_clf.classify(texts[1:2], LABELS, return_all=True)[0]
    own = first_clf.classify(texts[:1], ["games", "science"], return_all=True)[0]
    assert_close(out.results[1], shared) and assert_close(out.results[0], own)
    assert out.results[2] == [] and out.stats.ok == 3


def test_python_api_load_prints_no_transformers_config_warning(tiny_checkpoint):
    """Issue 12: `Classifier.load` printed "You are using a model of type GLiClass to instantiate a model
    of type ``" on every load (the CLI silenced it); a fresh process shows what a user sees."""
    code = "import sys; from gliclass_pipelines import Classifier; Classifier.load(sys.argv[1], device='cpu')"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "info"}
    command = [sys.executable, "-c", code, str(tiny_checkpoint)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "to instantiate a model of type" not in done.stderr + done.stdout


HIERARCHIES = [{"software": ["library", "game"]}, {"topic": {"science": ["physics"]}, "os": ["linux"]}]


def test_a_list_of_mappings_is_per_row_and_never_merged(first_clf, debian_texts, tiny_checkpoint):
    from gliclass_pipelines.core.config import ClassifyConfig

    texts = debian_texts[:2]
    mine = first_clf.classify(texts, HIERARCHIES, threshold=0.0)
    assert [sorted(x["label"] for x in r) for r in mine] == [
        ["software.game", "software.library"], ["os.linux", "topic.science.physics"]
    ]  # fmt: skip
    for got, text, hierarchy in zip(mine, texts, HIERARCHIES):
        assert_close(got, first_clf.classify([text], hierarchy, threshold=0.0)[0])
    config = ClassifyConfig(str(first_clf.source), per_row_labels=True, threshold=0.0)
    records, _ = config.classify(texts, HIERARCHIES, classifier=first_clf)
    assert records == mine
    with pytest.raises(ConfigError, match="one hierarchy per text"):
        ClassifyConfig(str(tiny_checkpoint), HIERARCHIES)
    with pytest.raises(ConfigError, match="one hierarchy per text"):
        first_clf.prepare(HIERARCHIES)
    with pytest.raises(ConfigError, match="one hierarchy per text"):
        first_clf.run(texts, HIERARCHIES, row_labels=[None, ["games"]])
    with pytest.raises(ConfigError, match="item 1 is a str"):
        first_clf.classify(texts, [HIERARCHIES[0], "games"])
    # a list starting with a label keeps its meaning: one shared taxonomy with a group in it
    shared = first_clf.classify(texts, ["games", HIERARCHIES[0]], threshold=0.0)
    assert all(len(r) == 3 for r in shared)


def test_no_false_token_length_warning(first_clf):
    """transformers warns "Token indices sequence length is longer than ..." once per tokenizer when a
    text is longer than model_max_length; we truncate or chunk after tokenizing, so the engine's
    tokenizer is told it has warned (a copy without that flag shows the warning is real)."""
    import copy
    import logging

    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    source = logging.getLogger("transformers.tokenization_utils_base")
    source.addHandler(handler)
    level, source.level = source.level, logging.WARNING
    try:
        tokenizer = copy.deepcopy(first_clf.tokenizer)
        tokenizer.model_max_length = 8
        tokenizer("word " * 64)
        assert not any("Token indices sequence length" in m for m in seen)
        tokenizer.deprecation_warnings = {}
        tokenizer("word " * 64)
        assert any("Token indices sequence length" in m for m in seen)
    finally:
        source.removeHandler(handler)
        source.level = level
