"""docs/RELIABILITY.md stands for the reliability cases the tests declare; `make reliability` refreshes it.

The test suite never writes the document (reports go under build/). It is stale when its rows (category,
test, what was tried, what was expected) differ from the cases declared with @case(...) and REFERENCED,
or when a row records a test that failed or did not run. Checking that needs only collection, not a run.
"""

from __future__ import annotations

from reliability_support import DOC_PATH, declared_cases, load_report_script

pytest_plugins = ["reliability_support"]


def test_reliability_doc_is_current(tmp_path):
    cases = declared_cases(tmp_path)
    assert cases, "no reliability case was collected"
    reasons = load_report_script().stale_reasons(cases, DOC_PATH.read_text(encoding="utf-8"))
    assert not reasons, f"{DOC_PATH.name} is stale; run `make reliability` and commit it:\n" + "\n".join(
        reasons[:30]
    )


def test_stale_rows_are_named():
    report = load_report_script()
    run = {"finished": "now", "commit": "abc", "command": "pytest", "session_seconds": 1.0, "cpus": 2}
    run |= {"platform": "Linux", "python": "3.11", "versions": {"torch": "2"}}
    case = {"category": "faults", "tried": "a | b\nc", "expected": "x", "numbers": {}, "outcome": "passed"}
    kept, gone = {**case, "nodeid": "tests/t.py::kept"}, {**case, "nodeid": "tests/t.py::gone"}
    text = report.render({"run": run, "records": [kept, gone]})
    assert report.stale_reasons([kept, gone], text) == []
    new = {**case, "nodeid": "tests/t.py::new", "category": "attacks"}
    changed = {**kept, "expected": "y"}
    reasons = report.stale_reasons([changed, new], text)
    assert [r.split(" (")[0] for r in reasons] == [
        "no row for t.py::new",
        "no row for t.py::kept",
        "row for no declared case: t.py::gone",
        "row for no declared case: t.py::kept",
    ]
    failed = report.render({"run": run, "records": [{**kept, "outcome": "FAILED"}]})
    assert report.stale_reasons([kept], failed)[0].startswith("row records a test that failed")
