"""Hostile-user attacks on the CLI's output replacement: it replaces only a folder it wrote itself.

Each test puts real user files where ``--output`` points, runs ``classify`` with ``--mode overwrite`` or
``--mode skip-existing``, and checks the exit code, the message, and every byte of the user's files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from reliability_support import ATTACKS, case

from gliclass_pipelines import cli
from gliclass_pipelines.cli.ownership import MARKER

pytest_plugins = ["reliability_support"]

ROWS = [{"id": f"{i:03d}", "text": f"a package for task number {i}"} for i in range(6)]


def snapshot(root: Path) -> dict[str, str]:
    """Every file's bytes (hashed) and every symlink's target under ``root``, without following links."""
    found = {}
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            path = Path(folder) / name
            key = str(path.relative_to(root))
            if path.is_symlink():
                found[key] = "-> " + os.readlink(path)
            elif path.is_file():
                found[key] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                found[key] = "dir"
    return found


def user_files(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "thesis.tex").write_text("\\section{Years of work}\n")
    (folder / "photos").mkdir(exist_ok=True)
    (folder / "photos" / "cat.jpg").write_bytes(bytes(range(256)) * 4)
    return folder


@pytest.fixture
def source(tmp_path) -> Path:
    path = tmp_path / "in" / "rows.jsonl"
    path.parent.mkdir()
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    return path


def classify(source: Path, output: str | Path, model: str | Path, mode: str = "overwrite") -> list[str]:
    return [
        "classify", "--input", str(source), "--output", str(output), "--labels", "games,science",
        "--model", str(model), "--mode", mode, "--progress", "none",
    ]  # fmt: skip


def refused(args: list[str], watched: Path, capsys, *words: str) -> str:
    before = snapshot(watched)
    assert before, "the test must watch real files"
    code = cli.main(args)
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE, err
    assert snapshot(watched) == before
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    for word in words:
        assert word in err, err
    return err


@case(
    ATTACKS,
    "--mode {mode} on a folder of user files (a file and a subfolder, no marker)",
    "exit 2 naming the files there; every byte survives",
)
@pytest.mark.parametrize("mode", ["overwrite", "skip-existing"])
def test_user_folder_is_not_replaced(mode, source, tiny_checkpoint, tmp_path, capsys):
    folder = user_files(tmp_path / "mine")
    refused(classify(source, folder, tiny_checkpoint, mode), tmp_path, capsys, "thesis.tex", "photos")


@case(
    ATTACKS,
    "--mode overwrite on a previous output of this tool that a user added a file to",
    "exit 2 naming the added file; the output and the file survive",
)
def test_previous_output_with_a_user_file_is_not_replaced(source, tiny_checkpoint, tmp_path, capsys):
    output = tmp_path / "out"
    assert cli.main(classify(source, output, tiny_checkpoint)) == 0
    (output / "notes.txt").write_text("my notes about this run\n")
    refused(classify(source, output, tiny_checkpoint), tmp_path, capsys, "notes.txt")


@case(
    ATTACKS,
    "--output . with the working folder holding user files (cwd is a temporary folder)",
    "exit 2: 'is the working folder'; every byte survives",
)
def test_working_folder_is_refused(source, tiny_checkpoint, tmp_path, monkeypatch, capsys):
    work = user_files(tmp_path / "work")
    monkeypatch.chdir(work)
    refused(classify(source, ".", tiny_checkpoint), tmp_path, capsys, "the working folder")
    refused(classify(source, "..", tiny_checkpoint), tmp_path, capsys, "holds the working folder")


@case(
    ATTACKS,
    "--output ~ and --output $HOME with HOME set to a temporary folder of user files",
    "exit 2: 'is the home folder'; every byte survives",
)
def test_home_folder_is_refused(source, tiny_checkpoint, tmp_path, monkeypatch, capsys):
    home = user_files(tmp_path / "home")
    monkeypatch.setenv("HOME", str(home))
    refused(classify(source, "~", tiny_checkpoint), tmp_path, capsys, "the home folder")
    refused(classify(source, str(home), tiny_checkpoint), tmp_path, capsys, "the home folder")


@case(
    ATTACKS,
    "--output is a symlink to a folder of user files (and a symlink to a previous output)",
    "exit 2: 'is a symlink'; the link and its target's files survive",
)
def test_symlink_output_is_refused(source, tiny_checkpoint, tmp_path, capsys):
    target = user_files(tmp_path / "target")
    link = tmp_path / "link"
    link.symlink_to(target, target_is_directory=True)
    refused(classify(source, link, tiny_checkpoint), tmp_path, capsys, "is a symlink", str(target))
    previous = tmp_path / "previous"
    assert cli.main(classify(source, previous, tiny_checkpoint)) == 0
    link.unlink()
    link.symlink_to(previous, target_is_directory=True)
    refused(classify(source, link, tiny_checkpoint), tmp_path, capsys, "is a symlink")


@case(
    ATTACKS,
    "--output is an existing regular file",
    "exit 2: 'is an existing file'; its bytes survive",
)
def test_regular_file_is_refused(source, tiny_checkpoint, tmp_path, capsys):
    report = tmp_path / "report.pdf"
    report.write_bytes(b"%PDF-1.7 quarterly numbers")
    refused(classify(source, report, tiny_checkpoint), tmp_path, capsys, "is an existing file")


@case(
    ATTACKS,
    "--output is the folder holding the model, the model folder itself, or the folder holding the input",
    "exit 2 naming the model or the input; every byte survives",
)
def test_folders_holding_the_model_or_input_are_refused(source, tiny_checkpoint, tmp_path, capsys):
    models = tmp_path / "models"
    model = shutil.copytree(tiny_checkpoint, models / "tiny")
    refused(classify(source, models, model), tmp_path, capsys, "holds the model")
    refused(classify(source, model, model), tmp_path, capsys, "is the model")
    refused(classify(source, source.parent, model), tmp_path, capsys, "holds the input")
    refused(classify(source, tmp_path, model), tmp_path, capsys, "holds the input")


@case(ATTACKS, "--output / (the root folder)", "exit 2 before any model loads")
def test_root_is_refused(source, tmp_path, capsys):
    assert cli.main(classify(source, "/", tmp_path / "no-model")) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "root folder" in err or "holds the working folder" in err, err


@case(
    ATTACKS,
    "a user file appears in the previous output while the job runs (checked again at commit)",
    "the commit refuses; the previous output and the file survive; the new parts are not moved in",
)
def test_commit_checks_the_output_again(source, tiny_checkpoint, tmp_path):
    from gliclass_pipelines.cli.output import commit
    from gliclass_pipelines.cli.ownership import NotOursError, write_marker

    output = tmp_path / "out"
    assert cli.main(classify(source, output, tiny_checkpoint)) == 0
    (output / "late.csv").write_text("added while the job ran\n")
    before = snapshot(output)
    temp = tmp_path / "out.tmp-test"
    temp.mkdir()
    write_marker(temp)
    with pytest.raises(NotOursError, match="late.csv"):
        commit(temp, output, "overwrite", "{}")
    assert snapshot(output) == before


@case(
    ATTACKS,
    "--mode overwrite and --mode skip-existing (no _SUCCESS) on a genuine previous output",
    "replaced: the new results are there, no .old or .tmp folder is left beside it",
)
def test_genuine_previous_output_is_replaced(source, tiny_checkpoint, tmp_path):
    import pyarrow.parquet as pq

    output = tmp_path / "out"
    assert cli.main(classify(source, output, tiny_checkpoint)) == 0
    assert (output / MARKER).is_file()
    args = classify(source, output, tiny_checkpoint)
    args[args.index("--labels") + 1] = "alpha,beta"
    assert cli.main(args + ["--threshold", "0"]) == 0
    labels = {x["label"] for row in pq.read_table(output).to_pylist() for x in row["gliclass"]}
    assert labels == {"alpha", "beta"}
    (output / cli.SUCCESS).unlink()
    assert cli.main(classify(source, output, tiny_checkpoint, "skip-existing")) == 0
    assert (output / cli.SUCCESS).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]
