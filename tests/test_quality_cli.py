"""`gliclass-pipelines evaluate | calibrate | fine-tune` run as a user runs them: a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gliclass_pipelines import Taxonomy

LABELS = "sports,business,technology"
ROWS = [
    {"text": "The home team won the championship in overtime.", "labels": ["sports"]},
    {"text": "Stocks fell sharply after the central bank raised rates.", "labels": ["business"]},
    {"text": "The new phone has a faster processor.", "labels": ["technology"]},
    {"text": "Investors cheered the battery startup.", "labels": ["business", "technology"]},
    {"text": "She broke the national record in the marathon.", "labels": ["sports"]},
    {"text": "Engineers released a software update.", "labels": ["technology"]},
    {"text": "The company reported record profits.", "labels": ["business"]},
    {"text": "The coach praised the defense.", "labels": ["sports"]},
    {"text": "A quiet day with nothing happening.", "labels": []},
    {"text": "The cloud service was down for hours.", "labels": ["technology", "bogus"]},
]


def run(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("gliclass-pipelines")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "gliclass_pipelines.cli"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([*command, *args], capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in ROWS), encoding="utf-8")
    return path


def test_evaluate_writes_json_markdown_and_plot(tiny_checkpoint, data, tmp_path):
    out = tmp_path / "report"
    done = run("evaluate", "--model", str(tiny_checkpoint), "--input", str(data), "--labels", LABELS,
               "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["rows"] == 10 and report["unknown_gold"] == 1 and len(report["per_label"]) == 3
    assert sum(m["support"] for m in report["per_label"]) == 10
    assert "| metric | value |" in (out / "report.md").read_text()
    assert (out / "thresholds.png").read_bytes()[:4] == b"\x89PNG"
    assert "micro-F1" in done.stdout


def test_calibrate_writes_a_taxonomy_every_engine_reads(tiny_checkpoint, data, tmp_path):
    out = tmp_path / "taxonomy.yaml"
    done = run("calibrate", "--model", str(tiny_checkpoint), "--input", str(data), "--labels", LABELS,
               "--out", str(out), "--min-support", "2", "--holdout", "0.3")  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["fit_rows"] + summary["holdout_rows"] == 10
    taxonomy = Taxonomy.from_file(out)
    assert taxonomy.labels == tuple(LABELS.split(",")) and len(taxonomy.thresholds) == 3


def test_fine_tune_then_classify(tiny_checkpoint, data, tmp_path):
    out = tmp_path / "tuned"
    good = tmp_path / "good.jsonl"
    good.write_text("\n".join(json.dumps(r) for r in ROWS[:9]), encoding="utf-8")
    done = run("fine-tune", "--model", str(tiny_checkpoint), "--input", str(good), "--labels", LABELS,
               "--out", str(out), "--epochs", "1", "--batch-size", "4", "--max-length", "64")  # fmt: skip
    assert done.returncode == 0, done.stderr
    from gliclass_pipelines import Classifier

    assert (
        len(Classifier.load(str(out), device="cpu").classify(["A match."], LABELS.split(","), threshold=0)[0])
        == 3
    )


def test_fine_tune_refuses_labels_outside_the_taxonomy(tiny_checkpoint, data, tmp_path):
    done = run("fine-tune", "--model", str(tiny_checkpoint), "--input", str(data), "--labels", LABELS,
               "--out", str(tmp_path / "tuned"))  # fmt: skip
    assert done.returncode == 2
    assert "'bogus', which is not in the taxonomy" in done.stderr
    assert not (tmp_path / "tuned").exists()
