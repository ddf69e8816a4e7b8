"""Reliability of the Beam adapter: fuzzed elements never crash the handler, and bad ones are dead letters.

Lone surrogates reach the handler only in-process: Beam's coders refuse them (UnicodeEncodeError) before
any transform of ours runs, so the pipeline test leaves them out.
"""

from __future__ import annotations

import sys

import pytest

beam = pytest.importorskip("apache_beam")

import cloudpickle  # noqa: E402
from apache_beam.runners.portability.fn_api_runner import FnApiRunner  # noqa: E402
from beam_support import collected, sink  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from reliability_support import (  # noqa: E402
    FAULTS,
    INPUTS,
    NULL_REASONS,
    case,
    label_problems,
    labels,
    text_problem,
    texts,
)

from gliclass_pipelines import Classifier  # noqa: E402
from gliclass_pipelines.beam.transforms import ClassifyText, Failed, GLiClassModelHandler  # noqa: E402

pytest_plugins = ["reliability_support"]
pytestmark = pytest.mark.beam

cloudpickle.register_pickle_by_value(sys.modules[__name__])

LABELS = ["libraries", "games", "science", "networking"]
POISON = "POISON-PILL"


# ------------------------------------------------------------------------------------------------------
# Expected outcome of one element


def expected(element) -> str:
    """'element_error', 'null', 'failed', 'empty' or 'result': what the isolating handler should give."""
    if element is None or isinstance(element, str):
        text, own = element, None
    elif isinstance(element, dict) and "text" in element:
        text, own = element["text"], element.get("labels")
    else:
        return "element_error"
    if text is not None and not isinstance(text, str):
        return "element_error"
    if own is not None and (not isinstance(own, list) or any(not isinstance(x, str) for x in own)):
        return "element_error"
    problem = text_problem(text)
    if problem in NULL_REASONS:
        return "null"
    if problem is not None or (own and label_problems(own)):
        return "failed"
    return "empty" if own == [] else "result"


def outcome(inference) -> str:
    if isinstance(inference, Failed):
        return "element_error" if inference.reason.startswith("ElementError") else "failed"
    if inference is None:
        return "null"
    return "empty" if inference == [] else "result"


def elements(surrogates: bool = True):
    text = texts(surrogates=surrogates, non_strings=False)
    cell = st.one_of(
        st.none(),
        st.lists(labels(surrogates=surrogates), max_size=5),
        st.lists(st.one_of(labels(surrogates=surrogates), st.none()), max_size=3),
        st.text(max_size=4),
    )
    malformed = st.sampled_from([7, 2.5, b"bytes", ("a", "b", "c"), {"txt": "no text field"}, {"text": 3}])
    return st.one_of(
        text,
        text,
        st.fixed_dictionaries({"text": text}, optional={"labels": cell}),
        st.fixed_dictionaries({"text": text}, optional={"labels": cell}),
        malformed,
    )


# ------------------------------------------------------------------------------------------------------
# Inputs


@case(
    INPUTS,
    "Beam: GLiClassModelHandler (ClassifyText's isolating mode) on batches of fuzzed elements: random "
    "Unicode texts (lone surrogates included), None, whitespace, mappings with per-element labels "
    "(None, duplicates, markers, nulls inside, a str), and malformed elements",
    "one PredictionResult per element, in order; bad elements Failed(reason), null texts None; "
    "the rest classified",
)
def test_beam_fuzzed_handler(tiny_checkpoint, clf, reliability):
    handler = GLiClassModelHandler(tiny_checkpoint, LABELS, threshold=0.0).isolating()

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(elements(), min_size=1, max_size=10))
    def check(batch):
        results = handler.run_inference(batch, clf)
        assert [r.example for r in results] == batch
        got = [outcome(r.inference) for r in results]
        assert got == [expected(e) for e in batch], [r.inference for r in results]
        reliability.add(examples=1, elements=len(batch))
        reliability.add(**{kind: got.count(kind) for kind in set(got)})

    check()


BATCHING = ("min_batch_tokens", "max_batch_tokens", "min_batch_size", "max_batch_size", "model_copies")
GARBAGE = [None, True, -1, 0, 1, 5, 64, 2.5, float("nan"), float("inf"), "x", "10", [1]]
FIELDS = ("max_batch_duration_secs", "text_field", "labels_field")


@case(
    INPUTS,
    "Beam: GLiClassModelHandler and ClassifyText built with random values (valid numbers, 0, negatives, "
    "NaN, bools, strings, lists) for the batching and sharing arguments (max_batch_duration_secs, "
    "text_field and labels_field included), plus the core's settings and shared label lists "
    "(duplicates, markers, surrogates, None)",
    "ConfigError at construction, never another exception; no model is loaded",
)
def test_beam_fuzzed_construction(tiny_checkpoint, reliability):
    from gliclass_pipelines import ConfigError
    from gliclass_pipelines.model.sources import load_count

    names = (*BATCHING, *FIELDS, "threshold", "max_length")
    arguments = st.fixed_dictionaries({}, optional={name: st.sampled_from(GARBAGE) for name in names})
    before = load_count()

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(st.one_of(labels(), st.none()), max_size=6), arguments)
    def check(label_list, kwargs):
        for build in (GLiClassModelHandler, ClassifyText):
            try:
                build(tiny_checkpoint, label_list, **kwargs)
            except ConfigError as refused:
                assert str(refused)
                reliability.add(refused=1)
            else:
                assert not label_problems(label_list)
                reliability.add(accepted=1)

    check()
    assert load_count() == before


# ------------------------------------------------------------------------------------------------------
# Faults


def pipeline_elements(debian_texts: list[str]) -> tuple[list, list]:
    """(good elements, bad elements): odd but classifiable texts, and what must be a dead letter."""
    good = [
        *debian_texts[:30],
        "\x00\x01\x1b[31m control",
        "😀👍🏽🇺🇸 emoji",
        "مرحبا بالعالم \u202e",
        "\u200b\u200d zero width",
        "x" * (1 << 20),
        None,
        " \t\u3000",
        {"text": debian_texts[30], "labels": ["a.b", "games"]},
        {"text": debian_texts[31], "labels": []},
    ]
    bad = [
        f"{POISON} {debian_texts[32]}",
        {"text": f"{debian_texts[33]} {POISON}"},
        {"text": debian_texts[34], "labels": ["games", "Games "]},
        {"text": debian_texts[35], "labels": ["x<<LABEL>>"]},
        {"text": debian_texts[36], "labels": ["games", None]},
        {"txt": "no text field"},
        42,
    ]
    return good, bad


@case(
    FAULTS,
    "Beam ClassifyText on FnApiRunner, one bundle of 46 elements: the tokenizer step raises (injected "
    "RuntimeError) for 2 of them; 5 more are malformed or carry bad labels; the rest include a 1 MB "
    "string, control chars, emoji, RTL, zero-width and null texts",
    "exactly the 7 bad elements in dead letters, each with its stage and reason; the 39 others "
    "classified as the core classifies them",
)
def test_fault_beam_inference_raises(tiny_checkpoint, clf, debian_texts, tmp_path, monkeypatch, reliability):
    real_encode = Classifier._encode

    def encode(self, batch_texts, *args, **kwargs):
        if any(POISON in t for t in batch_texts):
            raise RuntimeError("tokenizer crashed (injected)")
        return real_encode(self, batch_texts, *args, **kwargs)

    monkeypatch.setattr(Classifier, "_encode", encode)  # FnApiRunner runs in this process
    good, bad = pipeline_elements(debian_texts)
    assert (len(good), len(bad)) == (39, 7)
    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        out = (
            pipeline | beam.Create(good + bad) | ClassifyText(tiny_checkpoint, LABELS, min_batch_tokens=10**6)
        )
        sink(out.results, tmp_path / "results", "SinkResults")
        sink(out.dead_letters, tmp_path / "dead", "SinkDead")
    results, dead = collected(tmp_path / "results"), collected(tmp_path / "dead")
    assert sorted(map(repr, (d["element"] for d in dead))) == sorted(map(repr, bad))
    reasons = {repr(d["element"]): d for d in dead}
    assert all("tokenizer crashed" in reasons[repr(e)]["reason"] for e in bad[:2])
    assert sorted(map(repr, (r.example for r in results))) == sorted(map(repr, good))
    check_results(clf, results)
    stages = sorted(d["stage"] for d in dead)
    reliability.set(results=len(results), dead_letters=len(dead), stages=", ".join(stages))


def check_results(clf: Classifier, results: list) -> None:
    for r in results:
        element = r.example
        text, own = (element["text"], element.get("labels")) if isinstance(element, dict) else (element, None)
        want = clf.run([text], [own] if own is not None else LABELS, per_row=own is not None).results[0]
        if want is None or r.inference is None:
            assert want is None and r.inference is None
            continue
        assert {x["label"] for x in r.inference} == {x["label"] for x in want}
        for got, expect in zip(r.inference, want):
            assert got["score"] == pytest.approx(expect["score"], abs=1e-5)
