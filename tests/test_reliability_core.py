"""Reliability of the core: fuzzed texts, labels and options never crash it; faults give clear errors.

Each test declares its row of docs/RELIABILITY.md with @case and records its numbers (reliability_support).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from unittest import mock

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from reliability_support import (
    FAULTS,
    INPUTS,
    NULL_REASONS,
    REFERENCED,
    ROOT,
    case,
    label_problems,
    labels,
    load_report_script,
    plain_labels,
    text_problem,
    texts,
)

from gliclass_pipelines import Classifier, ConfigError, ModelLoadError
from gliclass_pipelines.core.config import ClassifyConfig
from gliclass_pipelines.core.outcomes import log_failed
from gliclass_pipelines.model.sources import copy_remote
from gliclass_pipelines.taxonomy.labels import normalize_label

pytest_plugins = ["reliability_support"]

LABELS = ["libraries", "games", "science", "networking", "web", "data", "security", "devtools"]
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
MB = 1 << 20


def check_output(out, rows: list, allowed: list[str] | None = None) -> Counter:
    """Invariants of every Output: one result and outcome per row, None exactly where the outcome is not
    ok, a null input only for a null or blank text, and RunStats counting the outcomes by kind and code."""
    assert len(out.results) == len(out.outcomes) == len(out.truncated) == len(rows)
    codes: Counter = Counter()
    for result, outcome in zip(out.results, out.outcomes):
        assert (result is None) == (not outcome.is_ok), (result, outcome)
        if not outcome.is_ok:
            assert outcome.reason and outcome.is_null_input == (outcome.reason in NULL_REASONS), outcome
            codes[outcome.code] += 1
            continue
        scores = [x["score"] for x in result]
        assert scores == sorted(scores, reverse=True)
        assert all(0.0 <= s <= 1.0 and not math.isnan(s) for s in scores)
        if allowed is not None:
            assert {x["label"] for x in result} <= set(allowed)
    stats = out.stats
    assert (stats.rows, stats.ok) == (len(rows), sum(o.is_ok for o in out.outcomes))
    assert stats.null_inputs == sum(o.is_null_input for o in out.outcomes)
    assert stats.failed == sum(o.is_failed for o in out.outcomes)
    assert stats.reasons == dict(codes) and stats.truncated == sum(out.truncated)
    return codes


# ------------------------------------------------------------------------------------------------------
# Inputs


@case(
    INPUTS,
    "core: lists of random Unicode texts (control chars, NUL, emoji, RTL, zero-width, lone surrogates), "
    "whitespace-only, None, NaN, ints and bytes",
    "no exception; None result exactly where a reason is given; reasons counted in stats",
)
def test_core_fuzzed_texts(clf, reliability):
    @FUZZ
    @given(st.lists(texts(), min_size=1, max_size=12))
    def check(rows):
        out = clf.run(rows, LABELS, threshold=0.0)
        kinds = check_output(out, rows, LABELS)
        for row, reason in zip(rows, (o.reason for o in out.outcomes)):
            want = text_problem(row)
            assert (reason is None) == (want is None) and (want is None or want in reason), (row, reason)
        reliability.add(examples=1, rows=len(rows), classified=len(rows) - sum(kinds.values()))
        reliability.add(**kinds)

    check()


ONE_MB_TEXTS = {
    "ASCII, no spaces": "x" * MB,
    "words": "word " * (MB // 5),
    "emoji": "😀" * (MB // 4),
    "CJK": "漢字仮名交じり文" * (MB // 24),
    "RTL with bidi controls": ("مرحبا \u202e" * (MB // 16)),
    "NUL and control chars": ("a\x00b\x01\x1b[0m " * (MB // 10)),
    "whitespace only": " \t\n\u3000" * (MB // 6),
    "lone surrogate in the middle": "word " * (MB // 10) + "\ud800" + "word " * (MB // 10),
}


@case(
    INPUTS,
    "core: eight 1 MB strings (ASCII without spaces, words, emoji, CJK, RTL, NUL/control, whitespace, "
    "a lone surrogate) in one call, truncate policy; 64 KB of words with the chunk policy",
    "a result or a null with its reason for each; labels kept; no exception",
)
def test_core_one_megabyte_texts(clf, reliability):
    rows = list(ONE_MB_TEXTS.values())
    started = time.perf_counter()
    out = clf.run(rows, LABELS, return_all=True)
    reliability.set(truncate_seconds=round(time.perf_counter() - started, 2))
    check_output(out, rows, LABELS)
    got = dict(zip(ONE_MB_TEXTS, (o.reason for o in out.outcomes)))
    assert got.pop("whitespace only") == "blank text"
    assert "lone surrogate" in got.pop("lone surrogate in the middle")
    assert all(reason is None for reason in got.values()), got
    assert all(len(r) == len(LABELS) for r in out.results if r is not None)
    assert out.truncated[1]  # the words: far past max_length
    started = time.perf_counter()
    chunked = clf.run(["word " * (64 * 1024 // 5)], LABELS, long_text="chunk", return_all=True)
    seconds = time.perf_counter() - started
    assert chunked.truncated == [True] and len(chunked.results[0]) == len(LABELS)
    reliability.set(
        chunk_64kb_seconds=round(seconds, 2), chunk_tokens_per_s=round(chunked.stats["real_tokens"] / seconds)
    )


@case(
    INPUTS,
    "core: shared label lists with duplicates (case/space twins), empty strings, the '.' separator, "
    "<<LABEL>>/<<SEP>> marker text, lone surrogates, control chars, non-strings, empty list",
    "an invalid list is refused when ClassifyConfig is built (ConfigError naming the problem); "
    "a valid one classifies",
)
def test_core_fuzzed_shared_labels(clf, reliability, tiny_checkpoint):
    values = st.one_of(
        st.lists(plain_labels(), min_size=1, max_size=8, unique_by=normalize_label),
        st.lists(labels(), max_size=8),
        st.lists(st.one_of(labels(), st.none(), st.integers()), max_size=8),
    )

    @FUZZ
    @given(values)
    def check(label_list):
        problems = label_problems(label_list)
        if problems:
            with pytest.raises(ConfigError) as refused:
                ClassifyConfig(model=str(tiny_checkpoint), labels=label_list)
            assert any(word in str(refused.value) for word in problems), (problems, str(refused.value))
            reliability.add(refused=1)
            return
        config = ClassifyConfig(model=str(tiny_checkpoint), labels=label_list, output="scores")
        records, out = config.classify(["a small arcade game", "\x00😀"], classifier=clf)
        assert all(set(r) == set(label_list) for r in records)
        reliability.add(accepted=1)

    check()


@case(
    INPUTS,
    "core: per-row label arrays holding None, empty strings, duplicates, markers, separators, lone "
    "surrogates; cells that are None, NaN, a str, an int",
    "bad rows: None result, reason 'invalid labels: ...', counted in stats['failed'] and logged as a "
    "warning; good rows classified",
)
def test_core_fuzzed_per_row_labels(clf, reliability, tiny_checkpoint, caplog):
    cell = st.one_of(
        st.lists(st.one_of(labels(), st.none()), max_size=6),
        st.none(),
        st.just(float("nan")),
        st.text(max_size=5),
        st.integers(),
    )
    config = ClassifyConfig(model=str(tiny_checkpoint), per_row_labels=True)

    @FUZZ
    @given(st.lists(st.tuples(texts(non_strings=False), cell), min_size=1, max_size=10))
    def check(rows):
        caplog.clear()
        row_texts, row_labels = [t for t, _ in rows], [c for _, c in rows]
        with caplog.at_level(logging.WARNING, logger="gliclass_pipelines"):
            records, out = config.classify(row_texts, row_labels, classifier=clf)
            assert not caplog.records  # the core logs no row: the adapter that knows its id does, once
            log_failed(out.outcomes, limit=len(rows))
        check_output(out, row_texts)
        for i, (text, cell_value) in enumerate(rows):
            expect_row(out, i, text, cell_value)
        failed = [o.reason for o in out.outcomes if o.is_failed]
        logged = [m.getMessage() for m in caplog.records]
        assert len(logged) == len(failed) and all(r in line for r, line in zip(failed, logged))
        reliability.add(examples=1, rows=len(rows), invalid_label_rows=len(failed))

    check()


def expect_row(out, i: int, text, cell_value) -> None:
    if text_problem(text) is not None:
        assert out.results[i] is None
        return
    if cell_value is None or (isinstance(cell_value, float) and math.isnan(cell_value)):
        assert out.results[i] == [], (cell_value, out.outcomes[i].reason)
        return
    if not isinstance(cell_value, list):
        assert out.outcomes[i].reason.startswith("invalid labels: per-row labels must be a list")
        return
    if not cell_value:
        assert out.results[i] == []
    elif label_problems(cell_value):
        outcome = out.outcomes[i]
        assert out.results[i] is None and outcome.reason.startswith("invalid labels: "), outcome
    else:
        assert out.outcomes[i].reason is None and {x["label"] for x in out.results[i]} <= set(cell_value)


@case(
    INPUTS,
    "core: 1,000 labels, shared (flat and as a 10 x 100 hierarchy) and per row (two different lists)",
    "split into label groups; every row scored on all 1,000 labels",
)
def test_core_thousand_labels(clf, reliability, debian_texts):
    flat = [f"topic {i}" for i in range(1000)]
    rows = debian_texts[:2]
    started = time.perf_counter()
    out = clf.run(rows, flat, return_all=True)
    assert all(len(r) == 1000 for r in out.results)
    hierarchy = {f"group{g}": [f"label {i}" for i in range(100)] for g in range(10)}
    nested = clf.run(rows[:1], hierarchy, return_all=True)
    assert all(len(r) == 1000 and r[0]["label"].startswith("group") for r in nested.results)
    per_row = clf.run(rows, [flat, [f"other {i}" for i in range(1000)]], return_all=True)
    assert [len(r) for r in per_row.results] == [1000, 1000]
    assert {x["label"] for x in per_row.results[1]} == {f"other {i}" for i in range(1000)}
    groups = len(clf.prepare(flat).groups)
    assert groups > 1
    reliability.set(label_groups=groups, seconds=round(time.perf_counter() - started, 2))


@case(
    INPUTS,
    "core: what the fuzzing above crashed on before this change: a lone surrogate in a text, label or "
    "prompt; a per-row labels cell that is a str, NaN or nested list; max_length past the encoder's "
    "positions meeting a long row; an unknown or mistyped run option; multi_label='false'",
    "a null result with its reason for the row, or a ConfigError before any row is read",
)
def test_core_regressions_found_by_fuzzing(clf, tiny_checkpoint, reliability):
    model = str(tiny_checkpoint)
    out = clf.run(["a fine text", "a bad \ud800 text"], LABELS)
    assert out.results[0] and out.results[1] is None and out.stats["failed"] == 1
    assert out.outcomes[1].reason == "text is not valid Unicode: lone surrogate '\\ud800' at character 6"
    for bad in ({"labels": ["games", "\udc80"]}, {"labels": LABELS, "options": {"prompt": "\ud800"}}):
        with pytest.raises(ConfigError, match="not valid Unicode"):
            ClassifyConfig(model=model, **bad)
    cells = ["games", float("nan"), [["nested", "group"]], ["x", "\ud800"]]
    rows = clf.run(["a", "b", "c", "d"], cells, per_row=True)
    assert rows.outcomes[0].reason == (
        "invalid labels: per-row labels must be a list of str or a mapping of groups to labels, got str"
    )
    assert rows.results[1] == [] and {x["label"] for x in rows.results[2]} <= {"nested", "group"}
    assert rows.results[3] is None and "not valid Unicode" in rows.outcomes[3].reason
    refused = [{"options": {"bogus": 1}}, {"options": {"chunk_overlap": "8"}}, {"multi_label": "false"}]
    for bad in refused:
        with pytest.raises(ConfigError):
            ClassifyConfig(model=model, labels=LABELS, **bad)
    with pytest.raises(ConfigError, match="chunk_overlap"):
        clf.run(["a"], LABELS, chunk_overlap="8")
    with pytest.raises(ConfigError, match="512 positions"):
        Classifier.load(model, device="cpu", max_length=1024)
    reliability.set(cases=2 + 2 + len(cells) + len(refused) + 2)


GARBAGE = st.sampled_from(
    [None, True, False, -1, 0, 3, 2.5, float("nan"), float("inf"), "", "x", "0.5", [1], {"a": 1}]
)
CONFIG_VALUES = {
    "threshold": st.floats(0, 1),
    "multi_label": st.booleans(),
    "output": st.sampled_from(["labels", "top", "scores"]),
    "device": st.sampled_from(["auto", "cpu", "gpu", "cuda:x"]),
    "dtype": st.sampled_from(["auto", "float32", "bfloat16", "float16", "int8"]),
    "long_text": st.sampled_from(["truncate", "chunk", "split"]),
    "batch_tokens": st.integers(1, 5000),
    "max_length": st.sampled_from([24, 64, 512, 513, 1024]),
}
RUN_VALUES = {
    "chunk_overlap": st.integers(-1, 600),
    "max_batch_rows": st.integers(0, 300),
    "prompt": texts(non_strings=False),
    "examples": st.lists(
        st.fixed_dictionaries({"text": plain_labels(), "labels": st.lists(plain_labels(), max_size=2)}),
        max_size=2,
    ),
}


def options(values: dict) -> st.SearchStrategy:
    return st.fixed_dictionaries({}, optional={k: st.one_of(v, v, v, GARBAGE) for k, v in values.items()})


@case(
    INPUTS,
    "core: ClassifyConfig with valid and garbage values (None, bools, ints, NaN/inf, strings, lists) for "
    "every setting and run option (chunk_overlap, max_batch_rows, prompt, examples), "
    "then a 600-token text, a short one and None through the model it loads",
    "ConfigError at construction, or (when it needs the model: max_length against the encoder's "
    "positions, labels too long for max_length) a ConfigError when the model loads; never another "
    "exception, and never a failure on one row",
)
def test_core_fuzzed_options(reliability, tiny_checkpoint):
    rows = ["word " * 600, "a small arcade game", None]
    threads = torch.get_num_threads()

    @settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
    @given(options(CONFIG_VALUES), options(RUN_VALUES))
    def check(fields, run_options):
        try:
            config = ClassifyConfig(model=str(tiny_checkpoint), labels=LABELS, options=run_options, **fields)
        except ConfigError as refused:
            assert str(refused)
            reliability.add(refused_at_construction=1)
            return
        try:
            records, out = config.classify(rows)
        except ConfigError as refused:
            assert "max_length" in str(refused), str(refused)
            reliability.add(refused_at_load=1)
            return
        assert len(records) == 3 and records[2] is None and all(o.is_ok for o in out.outcomes[:2])
        reliability.add(accepted=1)

    try:
        check()
    finally:
        torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------------------------
# Faults


def fresh_copy(tiny_checkpoint: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_checkpoint, tmp_path / "checkpoint"))


def _cut_tail(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: max(0, path.stat().st_size - 100)])


WEIGHTS = "model.safetensors"
CORRUPTIONS = {  # what is damaged: (how, what the message must contain)
    "directory missing": (lambda d: shutil.rmtree(d), "does not exist"),
    "model.safetensors deleted": (lambda d: (d / WEIGHTS).unlink(), WEIGHTS),
    "model.safetensors empty": (lambda d: (d / WEIGHTS).write_bytes(b""), WEIGHTS),
    "model.safetensors random bytes": (lambda d: (d / WEIGHTS).write_bytes(os.urandom(4096)), WEIGHTS),
    "model.safetensors without its last 100 bytes": (lambda d: _cut_tail(d / WEIGHTS), WEIGHTS),
    "config.json empty": (lambda d: (d / "config.json").write_text(""), "config.json"),
    "config.json a JSON list": (lambda d: (d / "config.json").write_text("[]"), "config.json"),
    "tokenizer.json truncated": (lambda d: _cut_tail(d / "tokenizer.json"), "loading the tokenizer"),
}


@case(
    FAULTS,
    "checkpoint with {corruption}",
    "ModelLoadError at load whose message holds the checkpoint path and '{named}'",
)
@pytest.mark.parametrize(
    ("corruption", "named"), [(k, v[1]) for k, v in CORRUPTIONS.items()], ids=list(CORRUPTIONS)
)
def test_fault_corrupt_checkpoint(tiny_checkpoint, tmp_path, corruption, named, reliability):
    path = fresh_copy(tiny_checkpoint, tmp_path)
    CORRUPTIONS[corruption][0](path)
    with pytest.raises(ModelLoadError) as error:
        Classifier.load(str(path), device="cpu")
    assert str(path) in str(error.value) and named in str(error.value), str(error.value)
    reliability.set(error=type(error.value).__name__)


KILLED_COPY = """
import sys, time
from pathlib import Path
from fsspec.implementations.local import LocalFileSystem
from gliclass_pipelines.model.sources import copy_remote
from gliclass_pipelines.taxonomy.labels import normalize_label

def half_then_hang(self, rpath, lpath, recursive=False, **kwargs):
    Path(lpath).mkdir(parents=True, exist_ok=True)
    (Path(lpath) / "config.json").write_bytes((Path(rpath) / "config.json").read_bytes())
    Path(sys.argv[2]).write_text("half copied")
    time.sleep(600)

LocalFileSystem.get = half_then_hang
copy_remote(sys.argv[1])
"""


@case(
    FAULTS,
    "remote copy killed with SIGKILL after writing config.json (stale .partial directory and lock left)",
    "no usable cache entry; the next load cleans up, copies again and classifies like the source",
)
def test_fault_remote_copy_killed(tiny_checkpoint, tmp_path, monkeypatch, clf, reliability):
    cache = tmp_path / "cache"
    monkeypatch.setenv("GLICLASS_PIPELINES_CACHE", str(cache))
    uri = f"file://{fresh_copy(tiny_checkpoint, tmp_path)}"
    signal_file = tmp_path / "half-copied"
    env = dict(os.environ, GLICLASS_PIPELINES_CACHE=str(cache))
    child = subprocess.Popen([sys.executable, "-c", KILLED_COPY, uri, str(signal_file)], env=env)
    try:
        wait_for(signal_file, child)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    leftovers = sorted(p.name for p in cache.iterdir())
    assert [p for p in cache.iterdir() if p.is_dir() and ".partial-" not in p.name] == []
    target = copy_remote(uri)
    assert sorted(p.name for p in cache.iterdir() if p.is_dir()) == [target.name]
    texts_ = ["a library for parsing xml", "a small arcade game"]
    copied = Classifier.load(str(target), device="cpu")
    assert copied.classify(texts_, LABELS, return_all=True) == clf.classify(texts_, LABELS, return_all=True)
    reliability.set(left_by_the_killed_copy=", ".join(leftovers))


def wait_for(path: Path, child: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert child.poll() is None, f"the copying process exited early ({child.returncode})"
        assert time.monotonic() < deadline, "the copying process never reached the middle of the copy"
        time.sleep(0.05)


@case(
    FAULTS,
    "CUDA out-of-memory injected on every forward pass above a random batch size (1-8 sequences), "
    "random token budgets and texts",
    "batches halved until they fit (splits counted); every score equal to the uninjected run's within "
    "1e-5 (float32 noise of other padding)",
)
def test_fault_injected_oom(clf, reliability, debian_texts):
    same_length = [f"a library for networking and games, version {c}" for c in "abcdefghijkl"]
    pool = debian_texts[:40] + same_length
    baseline = {t: r for t, r in zip(pool, clf.classify(pool, LABELS, return_all=True))}
    real_forward = clf.forward

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @example(same_length, 1, 100000)  # one batch of 12 (equal lengths): splits for sure, whatever is drawn
    @given(
        st.lists(st.sampled_from(pool), min_size=2, max_size=12),
        st.integers(1, 8),
        st.sampled_from([2000, 4096, 100000]),
    )
    def check(rows, limit, batch_tokens):
        def forward(batch):
            if len(batch.sequences) > limit:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
            return real_forward(batch)

        with mock.patch.object(clf, "forward", forward):
            out = clf.run(rows, LABELS, return_all=True, batch_tokens=batch_tokens)
        for text, result in zip(rows, out.results):
            assert scores_of(result) == pytest.approx(scores_of(baseline[text]), abs=1e-5)
        reliability.add(examples=1, oom_splits=out.stats["oom_splits"])

    check()
    assert reliability.numbers["oom_splits"] > 0


def scores_of(result: list[dict]) -> dict[str, float]:
    return {x["label"]: x["score"] for x in result}


# ------------------------------------------------------------------------------------------------------
# The evidence itself


def test_referenced_fault_tests_exist():
    """docs/RELIABILITY.md lists these existing tests; a renamed one must not vanish from it silently."""
    for nodeid in REFERENCED:
        path, name = nodeid.split("::")
        assert f"def {name}(" in (ROOT / path).read_text(encoding="utf-8"), nodeid


def test_report_shows_failures_and_counts_them():
    report = load_report_script()
    record = {"category": "faults", "tried": "a | b", "expected": "x", "numbers": {"n": 1.23456, "l": [1, 2]}}
    run = {"finished": "now", "commit": "abc", "command": "pytest", "session_seconds": 1.0, "cpus": 2}
    run |= {"platform": "Linux", "python": "3.11", "versions": {"torch": "2"}}
    rows = [{**record, "nodeid": "tests/t.py::a", "outcome": "passed"}]
    rows.append({**record, "nodeid": "tests/t.py::b", "outcome": "FAILED"})
    text = report.render({"run": run, "records": rows})
    assert "**Outcome: 1 FAILED, 1 passed (2 reliability tests).**" in text
    assert "| a \\| b | x | **FAILED** | n=1.23, l=1; 2 | `t.py::b` |" in text
