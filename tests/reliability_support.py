"""Evidence for docs/RELIABILITY.md, recorded by the reliability tests themselves.

The tests/test_reliability*.py modules load this module as a pytest plugin (``pytest_plugins``). A test
declares what it tries with :func:`case`, and fills in its numbers through the ``reliability`` fixture;
the outcome (passed, FAILED, skipped) comes from pytest's own reports, never from the test. At the end of
the session the records go to build/ only: build/reliability.json from a run that holds every reliability
test and every existing test listed in REFERENCED, build/reliability-partial.json from any other run. No
test run writes docs/RELIABILITY.md: ``make reliability`` runs these tests and renders it
(scripts/reliability_report.py), and tests/test_evidence_doc.py fails while the declared cases
and the document's rows differ.

PYTEST_DONT_REWRITE (test modules import this before pytest loads it as a plugin)
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
JSON_PATH = ROOT / "build" / "reliability.json"
PARTIAL_PATH = ROOT / "build" / "reliability-partial.json"
DOC_PATH = ROOT / "docs" / "RELIABILITY.md"
REPORT_SCRIPT = ROOT / "scripts" / "reliability_report.py"
MODULE_GLOB = "test_reliability*.py"
DECLARED_ENV = "GLICLASS_RELIABILITY_DECLARED"  # collect-only runs write the declared cases to this path

INPUTS, FAULTS, LOAD, ATTACKS = "inputs", "faults", "load", "attacks"


@dataclass(frozen=True)
class Case:
    """What a test tries and what it expects; ``{name}`` fields are filled from the test's parameters."""

    category: str
    tried: str
    expected: str


# Existing tests that already inject a fault the reliability issue asks for: listed with their outcome.
REFERENCED: dict[str, Case] = {
    "tests/test_loading.py::test_broken_config_json_names_the_file": Case(
        FAULTS, "checkpoint whose config.json is not JSON", "ModelLoadError naming config.json"
    ),
    "tests/test_loading.py::test_truncated_weights_name_the_file": Case(
        FAULTS,
        "checkpoint whose model.safetensors is cut to a third",
        "ModelLoadError naming the weights file",
    ),
    "tests/test_loading.py::test_directory_without_config_json": Case(
        FAULTS, "directory without config.json", "ModelLoadError naming config.json"
    ),
    "tests/test_loading.py::test_interrupted_remote_copy_leaves_no_usable_half_copy": Case(
        FAULTS,
        "remote (fsspec) copy that raises after writing config.json",
        "ModelLoadError; no cache directory left; the next copy succeeds",
    ),
    "tests/test_engine.py::test_oom_halves_the_batch_with_identical_results": Case(
        FAULTS, "CUDA out-of-memory on every batch of more than 3 sequences", "batches halved, same scores"
    ),
    "tests/test_tables.py::test_kill_mid_write_leaves_the_previous_version": Case(
        FAULTS,
        "kill -9 of a process in the middle of a Delta append, and of an overwrite (5,000-row batches)",
        "the table reads at its previous version with its previous rows",
    ),
    "tests/test_tables.py::test_incremental_refuses_a_changed_fingerprint_unless_full": Case(
        FAULTS,
        "an incremental run whose taxonomy differs from the one its state was classified under",
        "exit 2 naming --full, no output written; with --full every row is classified again",
    ),
    "tests/test_tables.py::test_foreign_delta_table_is_overwritten_only_when_named": Case(
        FAULTS,
        "--mode overwrite --output-format delta on a Delta table another tool wrote",
        "exit 2, the table untouched; replaced only with --overwrite-table naming it",
    ),
    "tests/test_beam.py::test_classify_text_dead_letters": Case(
        FAULTS,
        "ClassifyText batch with malformed elements, bad labels and one element whose inference raises",
        "each bad element alone in dead letters with its stage and reason; the rest succeed",
    ),
}


def case(category: str, tried: str, expected: str) -> Callable[[Any], Any]:
    """Declare a reliability test: its row in docs/RELIABILITY.md."""

    def mark(function: Any) -> Any:
        function.reliability_case = Case(category, tried, expected)
        return function

    return mark


@dataclass
class Record:
    nodeid: str
    category: str
    tried: str
    expected: str
    numbers: dict[str, Any] = field(default_factory=dict)
    outcome: str = "not run"
    seconds: float = 0.0

    def set(self, **numbers: Any) -> None:
        """Record numbers (rows, seconds, MiB...) to show beside the outcome."""
        self.numbers.update(numbers)

    def add(self, **counts: int) -> None:
        """Add to counters, e.g. once per hypothesis example."""
        for name, value in counts.items():
            self.numbers[name] = self.numbers.get(name, 0) + value


class _State:
    def __init__(self) -> None:
        self.records: dict[str, Record] = {}
        self.files_collected: set[str] = set()
        self.started = time.time()
        self.summary = ""


_STATE = _State()


def _record_for(item: pytest.Item) -> Record | None:
    found = _STATE.records.get(item.nodeid)
    if found is not None:
        return found
    declared = getattr(getattr(item, "function", None), "reliability_case", None)
    if declared is None:
        declared = REFERENCED.get(item.nodeid)
    if declared is None:
        return None
    params = getattr(getattr(item, "callspec", None), "params", {})
    tried, expected = (declared.tried.format(**params), declared.expected.format(**params))
    record = Record(item.nodeid, declared.category, tried, expected)
    _STATE.records[item.nodeid] = record
    return record


# ----------------------------------------------------------------------------------------------------------
# pytest hooks and the fixture


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list) -> None:
    _STATE.started = time.time()
    for item in items:
        if Path(str(item.fspath)).match(MODULE_GLOB):
            _STATE.files_collected.add(Path(str(item.fspath)).name)
        _record_for(item)


def pytest_deselected(items: list) -> None:
    for item in items:
        record = _record_for(item)
        if record is not None:
            record.outcome = "deselected"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    record = _STATE.records.get(report.nodeid)
    if record is None:
        return
    record.seconds += report.duration
    if report.when == "call" or (report.when == "setup" and not report.passed):
        record.outcome = "passed" if report.passed else ("skipped" if report.skipped else "FAILED")
    elif report.when == "teardown" and report.failed:
        record.outcome = "FAILED"


@pytest.fixture
def reliability(request: pytest.FixtureRequest) -> Record:
    """This test's record: call .set(...) / .add(...) to report its numbers."""
    record = _record_for(request.node)
    if record is None:
        raise RuntimeError(f"{request.node.nodeid} uses `reliability` but has no @case(...) declaration")
    return record


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if session.config.option.collectonly:
        if os.environ.get(DECLARED_ENV):
            cases = [asdict(r) for r in _STATE.records.values()]
            Path(os.environ[DECLARED_ENV]).write_text(json.dumps(cases, ensure_ascii=False), encoding="utf-8")
        return
    missing = _missing()
    report = {"run": _run_info(session), "records": [asdict(r) for r in _STATE.records.values()]}
    target = PARTIAL_PATH if missing else JSON_PATH
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    why = f" ({'; '.join(missing)})" if missing else ""
    _STATE.summary = f"wrote {target.relative_to(ROOT)}{why}; `make reliability` refreshes {DOC_PATH.name}"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _STATE.summary:
        terminalreporter.write_line(f"reliability: {_STATE.summary}")


def _missing() -> list[str]:
    """Why this run cannot stand for the whole reliability suite (an empty list when it can)."""
    missing = _not_collected()
    not_run = [r.nodeid for r in _STATE.records.values() if r.outcome in ("not run", "deselected")]
    if not_run:
        missing.append(f"{len(not_run)} reliability test(s) not run")
    return missing


def _not_collected() -> list[str]:
    missing = []
    files = {p.name for p in (ROOT / "tests").glob(MODULE_GLOB)}
    if files - _STATE.files_collected:
        missing.append(f"not collected: {', '.join(sorted(files - _STATE.files_collected))}")
    unreported = [nodeid for nodeid in REFERENCED if nodeid not in _STATE.records]
    if unreported:
        missing.append(f"{len(unreported)} referenced test(s) not collected")
    return missing


def selection() -> list[str]:
    """pytest arguments that select every reliability test: the modules, then the referenced tests."""
    modules = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob(MODULE_GLOB))
    return [*modules, *REFERENCED]


def declared_cases(work: Path) -> list[dict[str, Any]]:
    """Every declared case (node id, category, tried, expected): from this session when it collected every
    reliability test, else from a collect-only pytest run in a subprocess (seconds, nothing runs)."""
    if not _not_collected():
        return [asdict(r) for r in _STATE.records.values()]
    out = work / "declared.json"
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *selection()]
    env = dict(os.environ, **{DECLARED_ENV: str(out)})
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0 or not out.is_file():
        raise RuntimeError(
            f"collecting the reliability tests failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return json.loads(out.read_text(encoding="utf-8"))


def _run_info(session: pytest.Session) -> dict[str, Any]:
    return {
        "finished": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "session_seconds": round(time.time() - _STATE.started, 1),
        "command": "pytest " + " ".join(session.config.invocation_params.args),
        "commit": _git_commit(),
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "cpus": os.cpu_count(),
        "load_average": [round(x, 1) for x in os.getloadavg()],
        "versions": _versions(),
    }


def _git_commit() -> str:
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=7"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() or "unknown"


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("torch", "transformers", "gliclass", "pyspark", "apache-beam", "hypothesis"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "absent"
    return found


def load_report_script() -> Any:
    spec = importlib.util.spec_from_file_location("reliability_report", REPORT_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("reliability_report", module)
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------------------------------------
# Adversarial inputs, shared by the core, Spark and Beam suites

ODD_PIECES = (
    "\x00", "\x01", "\x07", "\x1b[31m", "\x7f", "\x85", "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff",
    "\u202e", "\u2066", "\u061c", "😀", "👍🏽", "🇺🇸", "👨\u200d👩\u200d👧", "مرحبا بالعالم", "שלום עולם",
    "e\u0301", "\ufffd", "\n", "\t", "\r\n", "\u00a0", "\u3000", "\u2028", "<<LABEL>>", "<<SEP>>",
    "<<EXAMPLE>>", "[CLS]", "[PAD]", "[UNK]", ".", "games", " a library for parsing xml ",
)  # fmt: skip
SURROGATES = ("\ud800", "\udbff", "\udc80", "\udfff")
WHITESPACE = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\u00a0\u1680\u2000\u2003\u2028\u2029\u202f\u205f\u3000"
ODD_LABELS = (
    "", " ", "\t\n", "games", "Games", " games ", "a.b", "a.b.c", ".", "a..b", "x<<LABEL>>", "<<SEP>>",
    "<<EXAMPLE>>y", "\x00", "\x1b", "😀", "مرحبا", "\u200b", "\ufeff", "[CLS]", "science fiction",
)  # fmt: skip
NULL_REASONS = ("null text", "blank text")


def texts(*, surrogates: bool = True, non_strings: bool = True) -> Any:
    """One text: random Unicode, odd pieces joined, whitespace only; less often None, NaN, non-strings."""
    from hypothesis import strategies as st

    characters = st.characters(exclude_categories=() if surrogates else ("Cs",))
    pieces = ODD_PIECES + (SURROGATES if surrogates else ())
    nulls = [None, float("nan"), 7, b"\x00bytes"] if non_strings else [None]
    return st.one_of(
        st.text(characters, min_size=1, max_size=80),
        st.text(characters, min_size=1, max_size=80),
        st.lists(st.sampled_from(pieces), min_size=1, max_size=12).map("".join),
        st.lists(st.sampled_from(pieces), min_size=1, max_size=12).map("".join),
        st.text(st.sampled_from(WHITESPACE), max_size=10),
        st.sampled_from(nulls),
    )


def labels(*, surrogates: bool = True) -> Any:
    """One label: a plain word, random Unicode (empty included) or an odd one (separator, markers, twins)."""
    from hypothesis import strategies as st

    characters = st.characters(exclude_categories=() if surrogates else ("Cs",))
    odd = ODD_LABELS + (SURROGATES if surrogates else ())
    return st.one_of(plain_labels(), plain_labels(), st.text(characters, max_size=20), st.sampled_from(odd))


def plain_labels() -> Any:
    """A label of letters and digits (any script)."""
    from hypothesis import strategies as st

    return st.text(st.characters(categories=("L", "N")), min_size=1, max_size=12)


def label_problems(values: list[Any]) -> list[str]:
    """Words a ConfigError for this label list may use: one per problem it has (none: a valid list)."""
    from gliclass_pipelines.taxonomy.labels import MARKERS, normalize_label

    problems, seen = [], set()
    if not values:
        problems.append("no labels")
    for value in values:
        if not isinstance(value, str):
            problems.append("type")
            continue
        if not value.strip():
            problems.append("empty")
        if any(marker in value for marker in MARKERS):
            problems.append("marker")
        if not _encodable(value):
            problems.append("not valid Unicode")
        elif value.strip() and normalize_label(value) in seen:
            problems.append("duplicate")
        seen.add(normalize_label(value) if _encodable(value) else value)
    return problems


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def text_problem(text: Any) -> str | None:
    """The reason the engine should give for this text (None: it gets a result)."""
    if text is None or (isinstance(text, float) and text != text):
        return "null text"
    if not isinstance(text, str):
        return "not a string"
    if not text.strip():
        return "blank text"
    if not _encodable(text):
        return "lone surrogate"
    return None


SOURCE_ROWS = [{"id": f"{i:03d}", "text": f"a package for task number {i}"} for i in range(6)]


@pytest.fixture
def source(tmp_path) -> Path:
    """A JSON lines input of six small rows, for the CLI's reliability tests."""
    path = tmp_path / "in" / "rows.jsonl"
    path.parent.mkdir()
    path.write_text("".join(json.dumps(r) + "\n" for r in SOURCE_ROWS), encoding="utf-8")
    return path
