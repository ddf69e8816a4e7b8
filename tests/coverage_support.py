"""The parity record behind the README's coverage table: tests record the largest score difference they
measured against the reference (batch size 1) and between batch 1 and a mixed batch of 16, per
(architecture, scorer, pooling), into build/coverage.json; scripts/coverage_report.py renders it."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORD_PATH = ROOT / "build" / "coverage.json"


def combination_key(architecture: str, scorer: str, pooling: str) -> str:
    return f"{architecture} | {scorer} | {pooling}"


def record(key: str, figure: str, value: float, nodeid: str) -> None:
    """Keep the largest `figure` ('parity' or 'batch') measured for a combination, with its test."""
    RECORD_PATH.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(RECORD_PATH.read_text()) if RECORD_PATH.is_file() else {}
    entry = data.setdefault(key, {})
    entry[figure] = max(float(value), entry.get(figure, 0.0))
    entry.setdefault("tests", [])
    if nodeid not in entry["tests"]:
        entry["tests"] = sorted([*entry["tests"], nodeid])
    RECORD_PATH.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
