"""Hostile-user attacks on the quality commands' outputs: `calibrate --out` writes only a taxonomy file,
and `evaluate --out` / `fine-tune --out` only a folder that is new, empty or this tool's own.

Each test puts user files where ``--out`` points, runs the command in process, and checks the exit code,
the one-line message, and every byte of the user's files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from reliability_support import ATTACKS, case
from test_reliability_safety_cli import refused

from gliclass_pipelines import Taxonomy, cli

pytest_plugins = ["reliability_support"]

LABELS = "games,science"
ROWS = [
    {"text": f"a package for task number {i}", "labels": ["games" if i % 2 else "science"]} for i in range(8)
]


@pytest.fixture
def labelled(tmp_path) -> Path:
    path = tmp_path / "labelled.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in ROWS), encoding="utf-8")
    return path


def command(name: str, model: Path, labelled: Path, out: Path | str) -> list[str]:
    return [name, "--model", str(model), "--input", str(labelled), "--labels", LABELS, "--out", str(out)]


@case(
    ATTACKS,
    "calibrate --out names the labelled input, a CSV, a folder, a symlink to a taxonomy, /dev/null, "
    "a YAML file that is not a taxonomy",
    "exit 2 naming why, before any model loads; every byte survives",
)
def test_calibrate_writes_only_a_taxonomy_file(labelled, tmp_path, capsys, reliability):
    watched = tmp_path
    (tmp_path / "sales.csv").write_text("region,total\nnorth,12\n")
    (tmp_path / "folder.yaml").mkdir()
    (tmp_path / "folder.yaml" / "keep.txt").write_text("keep")
    (tmp_path / "real.yaml").write_text("labels: [games, science]\n")
    os.symlink(tmp_path / "real.yaml", tmp_path / "link.yaml")
    (tmp_path / "config.yaml").write_text("server:\n  port: 8080\n  hosts: [a, b]\n")
    no_model = tmp_path / "no-model"
    attempts = {
        labelled: "must be a .yaml or .yml file",
        tmp_path / "sales.csv": "must be a .yaml or .yml file",
        tmp_path / "folder.yaml": "not a regular file",
        tmp_path / "link.yaml": "is a symlink",
        tmp_path / "config.yaml": "not a taxonomy file",
        tmp_path / "missing" / "t.yaml": "folder does not exist",
    }
    for out, words in attempts.items():
        refused(command("calibrate", no_model, labelled, out), watched, capsys, words)
    assert cli.main(command("calibrate", no_model, labelled, "/dev/null")) == cli.EXIT_USAGE
    assert "must be a .yaml" in capsys.readouterr().err
    reliability.set(refused=len(attempts) + 1)


@case(
    ATTACKS,
    "calibrate --out names an existing taxonomy file (the documented flow) or a new file",
    "exit 0: the file holds the labels and one fitted threshold per label; nothing else changes",
)
def test_calibrate_updates_a_taxonomy_file(tiny_checkpoint, labelled, tmp_path, capsys):
    taxonomy = tmp_path / "taxonomy.yaml"
    taxonomy.write_text("labels: [games, science]\nprompt: Tag the package.\n")
    args = command("calibrate", tiny_checkpoint, labelled, taxonomy)
    args[args.index("--labels") : args.index("--labels") + 2] = ["--taxonomy", str(taxonomy)]
    assert cli.main([*args, "--min-support", "1"]) == 0, capsys.readouterr().err
    updated = Taxonomy.from_file(taxonomy)
    assert updated.prompt == "Tag the package." and set(dict(updated.thresholds)) == {"games", "science"}
    assert cli.main(command("calibrate", tiny_checkpoint, labelled, tmp_path / "new.yml")) == 0
    assert Taxonomy.from_file(tmp_path / "new.yml").labels == ("games", "science")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labelled.jsonl", "new.yml", "taxonomy.yaml"]


@case(
    ATTACKS,
    "evaluate --out and fine-tune --out name a folder of user files (one is a report.md), or a file",
    "exit 2 before any model loads: 'was not written by gliclass-pipelines'; every byte survives",
)
def test_report_and_checkpoint_folders_must_be_ours(labelled, tmp_path, capsys):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "report.md").write_text("# My own report\n")
    (docs / "notes.txt").write_text("keep")
    no_model = tmp_path / "no-model"
    refused(
        command("evaluate", no_model, labelled, docs), tmp_path, capsys, "not written by gliclass-pipelines"
    )
    refused(
        command("fine-tune", no_model, labelled, docs), tmp_path, capsys, "not written by gliclass-pipelines"
    )
    refused(command("evaluate", no_model, labelled, docs / "notes.txt"), tmp_path, capsys, "not a folder")


@case(
    ATTACKS,
    "evaluate --out names its own previous report folder, then a new one",
    "exit 0 both times: the report is rewritten in place, beside the marker and nothing else",
)
def test_evaluate_rewrites_its_own_report(tiny_checkpoint, labelled, tmp_path, capsys):
    out = tmp_path / "report"
    for _ in range(2):
        assert cli.main(command("evaluate", tiny_checkpoint, labelled, out)) == 0, capsys.readouterr().err
    names = sorted(p.name for p in out.iterdir())
    assert names == ["_GLICLASS_PIPELINES", "report.json", "report.md", "thresholds.png"]
    assert json.loads((out / "report.json").read_text())["rows"] == len(ROWS)
