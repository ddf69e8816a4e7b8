"""The README's coverage table stands for what the code refuses and what the parity tests declare;
`python scripts/coverage_report.py` refreshes it after a run of tests/test_parity*.py."""

from __future__ import annotations

import importlib.util

from coverage_support import ROOT


def report_script():
    spec = importlib.util.spec_from_file_location("coverage_report", ROOT / "scripts" / "coverage_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_coverage_table_is_current():
    report = report_script()
    reasons = report.stale((ROOT / "README.md").read_text(encoding="utf-8"))
    assert not reasons, "README coverage table is stale; run scripts/coverage_report.py:\n" + "\n".join(
        reasons[:20]
    )


def test_a_changed_refusal_or_parity_test_makes_it_stale():
    report = report_script()
    text = report.render({"uni-encoder | simple | first": {"parity": 1e-7}})
    assert report.stale(text) == []
    assert "1.0e-07" in text
    broken = text.replace("| runs; parity tested with pass |", "| runs; no parity test yet |", 1)
    assert report.stale(broken)
    assert report.stale(text.replace("| architecture_type 'decoder-kv' is not run here", "| runs", 1))
    assert report.stale(text.replace("1.0e-07", "3.0e-01")) == []  # figures vary between runs
    assert report.stale("no section") == ["the README has no coverage section"]
