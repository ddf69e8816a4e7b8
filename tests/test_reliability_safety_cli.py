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
from reliability_support import ATTACKS, FAULTS, INPUTS, case

from gliclass_pipelines import cli
from gliclass_pipelines.io.ownership import MARKER

pytest_plugins = ["reliability_support"]


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
    from gliclass_pipelines.io.output import commit
    from gliclass_pipelines.io.ownership import NotOursError, write_marker

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
    "--mode overwrite and --mode skip-existing (no _SUCCESS) on a genuine previous output; an empty folder",
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
    empty = tmp_path / "empty"
    empty.mkdir()  # made by the user beforehand: nothing to lose
    assert cli.main(classify(source, empty, tiny_checkpoint)) == 0
    assert (empty / cli.SUCCESS).is_file()


# ----------------------------------------------------------------------------------------------------
# Bad records: the job keeps going, the row is kept with a null result, the file and line are named


def run_ok(args: list[str], capsys, caplog) -> tuple[list[dict], dict, str]:
    """Rows, _SUCCESS and the warnings of a run that must succeed."""
    import pyarrow.parquet as pq

    code = cli.main(args)
    out, err = capsys.readouterr()
    assert code == 0, err
    output = Path(args[args.index("--output") + 1])
    logged = err + caplog.text
    return pq.read_table(output).to_pylist(), json.loads((output / cli.SUCCESS).read_text()), logged


def good_rows(n: int) -> list[dict]:
    return [{"id": f"{i:05d}", "text": f"a library for parsing file format number {i}"} for i in range(n)]


@case(
    INPUTS,
    "2,000 good JSON lines and a truncated last line (the issue's 60,000-row case, smaller)",
    "exit 0: 2,001 rows in order, the last with its id and a null result; failed 1, named by file and line",
)
def test_truncated_last_jsonl_line(tiny_checkpoint, tmp_path, capsys, caplog):
    source = tmp_path / "rows.jsonl"
    lines = [json.dumps(r) for r in good_rows(2000)] + ['{"id": "02000", "text": "cut off in the mid']
    source.write_text("\n".join(lines), encoding="utf-8")
    args = classify(source, tmp_path / "out", tiny_checkpoint, "error") + ["--id-column", "id"]
    rows, success, err = run_ok(args, capsys, caplog)
    assert [r["id"] for r in rows] == [f"{i:05d}" for i in range(2001)]
    assert rows[-1]["gliclass"] is None and all(r["gliclass"] is not None for r in rows[:-1])
    assert (success["rows"], success["failed"], success["bad_records"]) == (2001, 1, 1)
    assert f"{source} line 2001: not valid JSON" in err


@case(
    INPUTS,
    "CSV with a byte that is not UTF-8 in a text and in another column, after a quoted two-line value",
    "exit 0: the first row's result null (failed), the other row classified with that field null; real lines",
)
def test_csv_with_a_byte_that_is_not_utf8(tiny_checkpoint, tmp_path, capsys, caplog):
    source = tmp_path / "rows.csv"
    source.write_bytes(
        b'id,section,text\n001,libs,"a text over\ntwo lines"\n002,libs,bad \xff byte\n'
        b"003,g\xffmes,a chess engine\n004,net,a web server\n"
    )
    rows, success, err = run_ok(classify(source, tmp_path / "out", tiny_checkpoint, "error"), capsys, caplog)
    assert [r["id"] for r in rows] == ["001", "002", "003", "004"]
    assert rows[1]["gliclass"] is None and rows[1]["text"] is None
    assert rows[2]["section"] is None and rows[2]["gliclass"] is not None
    assert (success["rows"], success["failed"], success["bad_records"]) == (4, 1, 2)
    assert f"{source} line 4: not UTF-8 in column(s) text" in err
    assert f"{source} line 5: not UTF-8 in column(s) section" in err


@case(
    INPUTS,
    "JSON lines whose text turns into a number (and whose id into a list) after the rows that set the types",
    "exit 0: those rows kept; the number's row null (failed), the other with a null id; lines named",
)
def test_text_that_turns_into_a_number(tiny_checkpoint, tmp_path, monkeypatch, capsys, caplog):
    from gliclass_pipelines.io import readers as inputs

    monkeypatch.setattr(inputs, "SCHEMA_ROWS", 100)  # the types come from the first 100 rows
    rows_in = good_rows(160)
    rows_in[150]["text"] = 42
    rows_in[151]["id"] = ["not", "an", "id"]
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows_in), encoding="utf-8")
    rows, success, err = run_ok(classify(source, tmp_path / "out", tiny_checkpoint, "error"), capsys, caplog)
    assert len(rows) == 160 and rows[150]["id"] == "00150" and rows[150]["gliclass"] is None
    assert rows[151]["id"] is None and rows[151]["gliclass"] is not None
    assert (success["failed"], success["bad_records"]) == (1, 2)
    assert f"{source} line 151: 'text' holds 42, not string" in err
    assert f"{source} line 152: 'id' holds" in err


@case(
    INPUTS,
    "the Beam runner on JSON lines whose text turns into a number after the rows that set the types",
    "exit 0: every row written; the number's row with a null text and a null result",
)
@pytest.mark.beam
def test_beam_runner_text_that_turns_into_a_number(tiny_checkpoint, tmp_path, monkeypatch, capsys, caplog):
    from gliclass_pipelines.io import readers as inputs

    monkeypatch.setattr(inputs, "SCHEMA_ROWS", 20)
    rows_in = good_rows(30)
    rows_in[25]["text"] = 42
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows_in), encoding="utf-8")
    args = [*classify(source, tmp_path / "out", tiny_checkpoint, "error"), "--runner", "beam"]
    rows, success, _ = run_ok(args, capsys, caplog)
    by_id = {r["id"]: r for r in rows}
    assert len(rows) == 30 and sorted(by_id) == [r["id"] for r in rows_in]
    assert by_id["00025"]["text"] is None and by_id["00025"]["gliclass"] is None
    assert sum(r["gliclass"] is None for r in rows) == 1 and success["failed"] == 1


@case(
    INPUTS,
    "a 5 MB text in JSON lines and in CSV (over Arrow's default block size)",
    "exit 0: the long row classified (truncated), its neighbours too",
)
@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_5_mb_text(fmt, tiny_checkpoint, tmp_path, capsys, caplog):
    import pyarrow as pa
    import pyarrow.csv as pcsv

    rows_in = good_rows(3)
    rows_in[1]["text"] = "word " * 1_000_000
    source = tmp_path / f"rows.{fmt}"
    if fmt == "jsonl":
        source.write_text("".join(json.dumps(r) + "\n" for r in rows_in), encoding="utf-8")
    else:
        pcsv.write_csv(pa.Table.from_pylist(rows_in), source)
    rows, success, _ = run_ok(classify(source, tmp_path / "out", tiny_checkpoint, "error"), capsys, caplog)
    assert [r["id"] for r in rows] == ["00000", "00001", "00002"]
    assert all(r["gliclass"] is not None for r in rows)
    assert success["truncated"] >= 1 and success["failed"] == 0


LONG_RECORDS = {  # text of row 00001 -> the reason its row fails
    "jsonl": "longer than 1,048,576 bytes",
    "csv-long-line": "longer than 1,048,576 bytes",
    "csv-quoted-over-two-long-lines": "longer than 1,048,576 bytes",
    "csv-quoted-over-many-short-lines": "field larger than field limit",
}


@case(
    INPUTS,
    "a record over the limit (lowered to 1 MiB here, 32 MiB by default) between good rows: a 3 MB JSON line, "
    "a 3 MB CSV line, a quoted CSV field over two 3 MB lines, and one over 120,000 short lines",
    "exit 0: 3 rows in order, the long one with a null result (failed) named by file and line; the rest "
    "classified",
)
@pytest.mark.parametrize("fmt", list(LONG_RECORDS))
def test_a_record_over_the_limit(fmt, tiny_checkpoint, tmp_path, monkeypatch, request, capsys, caplog):
    import csv

    from gliclass_pipelines.io import readers as inputs

    limit = 1 << 20
    monkeypatch.setattr(inputs.lines, "MAX_RECORD_BYTES", limit)
    previous = csv.field_size_limit(limit)
    request.addfinalizer(lambda: csv.field_size_limit(previous))
    long_text = "word " * 600_000
    source = tmp_path / ("rows.jsonl" if fmt == "jsonl" else "rows.csv")
    if fmt == "jsonl":
        rows_in = good_rows(3)
        rows_in[1]["text"] = long_text
        source.write_text("".join(json.dumps(r) + "\n" for r in rows_in), encoding="utf-8")
    else:
        text = {
            "csv-long-line": long_text,
            "csv-quoted-over-two-long-lines": f'"{long_text}\n{long_text}"',
            "csv-quoted-over-many-short-lines": '"' + "a few words\n" * 120_000 + '"',
        }[fmt]
        body = f"id,text\n00000,a chess engine\n00001,{text}\n00002,a web server\n"
        source.write_text(body, encoding="utf-8")
    rows, success, err = run_ok(classify(source, tmp_path / "out", tiny_checkpoint, "error"), capsys, caplog)
    assert len(rows) == 3 and [rows[0]["id"], rows[2]["id"]] == ["00000", "00002"]
    assert rows[1]["gliclass"] is None and rows[0]["gliclass"] and rows[2]["gliclass"]
    assert (success["rows"], success["failed"]) == (3, 1)
    assert f"{source} line {2 if fmt == 'jsonl' else 3}: " in err and LONG_RECORDS[fmt] in err, err


@case(INPUTS, "--input is a symlink to /dev/zero (an endless file without a newline), with each runner",
      "exit 2: 'is a device', before any model loads")  # fmt: skip
@pytest.mark.parametrize("runner", ["local", "spark", "beam"])
def test_a_device_as_input(runner, tmp_path, capsys):
    source = tmp_path / "rows.jsonl"
    os.symlink("/dev/zero", source)
    args = [*classify(source, tmp_path / "out", tmp_path / "no-model"), "--runner", runner]
    assert cli.main(args) == cli.EXIT_USAGE
    assert "is a device, not a file" in capsys.readouterr().err


@case(
    INPUTS,
    "CSV that starts with a UTF-8 byte order mark, ids with leading zeros (007)",
    "the id column is found and stays text: 007",
)
def test_csv_with_a_byte_order_mark_keeps_ids(tiny_checkpoint, tmp_path, capsys, caplog):
    source = tmp_path / "rows.csv"
    source.write_bytes(b"\xef\xbb\xbfid,text\n007,a chess engine\n0042,a web server\n")
    args = classify(source, tmp_path / "out", tiny_checkpoint, "error") + ["--id-column", "id"]
    rows, _, _ = run_ok(args, capsys, caplog)
    assert [r["id"] for r in rows] == ["007", "0042"]


# ----------------------------------------------------------------------------------------------------
# Secrets and echoed input


@case(
    ATTACKS,
    "--model https://user:password@host/m?sig=secret, and a 100,000-character --model",
    "exit 2 or 3; no secret in the message; a message under 2,000 characters",
)
def test_model_strings_are_redacted_and_cut(source, tmp_path, capsys):
    for model in ("https://user:password@host.invalid/m?sig=secret", "m" * 100_000):
        code = cli.main(classify(source, tmp_path / "out", model))
        err = capsys.readouterr().err
        assert code in (cli.EXIT_USAGE, cli.EXIT_MODEL), err
        assert "password" not in err and "secret" not in err
        assert len(err) < 2000 and "Traceback" not in err


@case(
    FAULTS,
    "GLICLASS_PIPELINES_CACHE points at a regular file and the model is remote (memory://)",
    "exit 3 naming GLICLASS_PIPELINES_CACHE; no output",
)
def test_unusable_cache_exits_3(source, tiny_checkpoint, tmp_path, monkeypatch, capsys):
    import fsspec

    memory = fsspec.filesystem("memory")
    for path in Path(tiny_checkpoint).iterdir():
        memory.pipe(f"/cli-cache-test/{path.name}", path.read_bytes())
    cache = tmp_path / "cache"
    cache.write_text("not a folder\n")  # unusable even for root, unlike a read-only folder
    monkeypatch.setenv("GLICLASS_PIPELINES_CACHE", str(cache))
    code = cli.main(classify(source, tmp_path / "out", "memory://cli-cache-test"))
    err = capsys.readouterr().err
    assert code == cli.EXIT_MODEL, err
    assert "GLICLASS_PIPELINES_CACHE" in err and not (tmp_path / "out").exists()
