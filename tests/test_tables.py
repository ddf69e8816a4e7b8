"""Issue 22: provenance on every result, incremental runs, Delta Lake tables (real tables, no mocks)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gliclass_pipelines import cli
from gliclass_pipelines.core.config import ClassifyConfig
from gliclass_pipelines.io.provenance import read_provenance

LABELS = "libraries,games,science"
N = 30


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def day1(debian_rows) -> list[dict]:
    return [{"id": i, "text": r["text"]} for i, r in enumerate(debian_rows[:N])]


@pytest.fixture(scope="module")
def day2(day1, debian_rows) -> list[dict]:
    """Rows 0-1 deleted, 5 and 6 changed, 3 new (ids N..N+2)."""
    rows = [dict(r) for r in day1[2:]]
    for r in rows:
        if r["id"] in (5, 6):
            r["text"] += " (updated)"
    return rows + [{"id": N + i, "text": debian_rows[N + i]["text"]} for i in range(3)]


def classify(
    tmp_path: Path, model: Path, source: Path, output: str, *more: str, labels: str = LABELS
) -> dict:
    argv = ["classify", "--input", str(source), "--output", str(tmp_path / output), "--model", str(model)]
    code = cli.main([*argv, "--labels", labels, "--id-column", "id", "--progress", "none", *more])
    assert code == 0
    success = tmp_path / output / "_SUCCESS"
    return json.loads(success.read_text()) if success.exists() else {}


def test_provenance_in_success_footers_and_column(tmp_path, tiny_checkpoint, day1):
    source = write_jsonl(tmp_path / "in.jsonl", day1)
    one = classify(tmp_path, tiny_checkpoint, source, "a", "--provenance-column", "fp")
    two = classify(tmp_path, tiny_checkpoint, source, "b")
    fingerprint = one["provenance"]["fingerprint"]
    assert (
        fingerprint
        == two["provenance"]["fingerprint"]
        == ClassifyConfig(model=str(tiny_checkpoint), labels=LABELS.split(",")).fingerprint()
    )
    assert one["provenance"]["model"]["revision"].startswith("sha256:")
    assert one["provenance"]["versions"]["gliclass"] == "0.1.21"
    table = pq.read_table(tmp_path / "a")
    assert set(table.column("fp").to_pylist()) == {fingerprint}
    assert read_provenance(tmp_path / "a" / "part-00000.parquet")["fingerprint"] == fingerprint
    assert "fp" not in pq.read_table(tmp_path / "b").column_names


def test_fingerprint_changes_with_label_threshold_and_model_file(tmp_path, tiny_checkpoint):
    model = tmp_path / "model"
    shutil.copytree(tiny_checkpoint, model)
    base = ClassifyConfig(model=str(model), labels=["a", "b"])
    before = base.fingerprint()
    assert before == ClassifyConfig(model=str(model), labels=["a", "b"]).fingerprint()
    assert base.with_(labels=["a", "c"]).fingerprint() != base.fingerprint()
    assert base.with_(threshold=0.6).fingerprint() != base.fingerprint()
    assert base.with_(output="scores").fingerprint() != base.fingerprint()
    assert base.with_(multi_label=False).fingerprint() != base.fingerprint()
    with open(model / "config.json", "a", encoding="utf-8") as handle:
        handle.write("\n")  # same JSON, other bytes: another checkpoint as far as provenance goes
    assert ClassifyConfig(model=str(model), labels=["a", "b"]).fingerprint() != before


def test_provenance_never_holds_uri_secrets():
    config = ClassifyConfig(model="memory://user:s3cr3t@bucket/model?sig=t0ken", labels=["a"])
    text = json.dumps(config.provenance())
    assert "s3cr3t" not in text and "t0ken" not in text
    assert len(config.fingerprint()) == 16


@pytest.mark.spark
def test_udf_and_handler_expose_the_fingerprint(tiny_checkpoint, spark):
    config = ClassifyConfig(model=str(tiny_checkpoint), labels=["a", "b"])
    beam = pytest.importorskip("gliclass_pipelines.beam.handler")
    assert beam.GLiClassModelHandler.from_config(config).fingerprint() == config.fingerprint()
    pytest.importorskip("pyspark")
    from gliclass_pipelines.spark.udf import GLiClassUDF

    assert GLiClassUDF(config).fingerprint() == config.fingerprint()


def test_incremental_classifies_only_new_and_changed_rows(tmp_path, tiny_checkpoint, day1, day2):
    state = ["--incremental", "--state", str(tmp_path / "state")]
    first = classify(tmp_path, tiny_checkpoint, write_jsonl(tmp_path / "d1.jsonl", day1), "o1", *state)
    assert first["rows"] == N and first["incremental"]["skipped"] == 0
    source = write_jsonl(tmp_path / "d2.jsonl", day2)
    second = classify(tmp_path, tiny_checkpoint, source, "o2", *state)
    counts = second["incremental"]
    assert counts == {"skipped": len(day2) - 5, "new": 3, "changed": 2, "deleted": 2}
    assert second["rows"] + counts["skipped"] == len(day2)
    assert sorted(pq.read_table(tmp_path / "o2").column("id").to_pylist()) == [5, 6, N, N + 1, N + 2]
    third = classify(tmp_path, tiny_checkpoint, source, "o3", *state)
    assert third["rows"] == 0 and third["incremental"]["skipped"] == len(day2)


def test_incremental_classifies_again_a_row_whose_prompt_or_threshold_changed(
    tmp_path, tiny_checkpoint, day1
):
    state = ["--incremental", "--state", str(tmp_path / "state")]
    columns = ["--prompt-column", "prompt", "--threshold-column", "cut"]
    schema = pa.schema(
        [("id", pa.int64()), ("text", pa.string()), ("prompt", pa.string()), ("cut", pa.float64())]
    )
    rows = [{**r, "prompt": None, "cut": None} for r in day1]
    for day in (1, 2):
        pq.write_table(pa.Table.from_pylist(rows, schema), tmp_path / f"d{day}.parquet")
        done = classify(tmp_path, tiny_checkpoint, tmp_path / f"d{day}.parquet", f"o{day}", *state, *columns)
        rows[3]["prompt"], rows[4]["cut"] = "Which topic is this?", 0.9
    assert done["incremental"] == {"skipped": N - 2, "new": 0, "changed": 2, "deleted": 0}
    assert sorted(pq.read_table(tmp_path / "o2").column("id").to_pylist()) == [3, 4]


def test_incremental_refuses_a_changed_fingerprint_unless_full(tmp_path, tiny_checkpoint, day1, capsys):
    source = write_jsonl(tmp_path / "d1.jsonl", day1)
    state = ["--incremental", "--state", str(tmp_path / "state")]
    classify(tmp_path, tiny_checkpoint, source, "o1", *state)
    argv = [
        "classify",
        "--input",
        str(source),
        "--output",
        str(tmp_path / "o2"),
        "--model",
        str(tiny_checkpoint),
    ]
    code = cli.main([*argv, "--labels", "libraries,games", "--id-column", "id", *state])
    assert code == cli.EXIT_USAGE
    assert "--full" in capsys.readouterr().err and not (tmp_path / "o2").exists()
    again = classify(tmp_path, tiny_checkpoint, source, "o2", *state, "--full", labels="libraries,games")
    assert again["rows"] == N


def test_state_folder_of_someone_else_is_refused(tmp_path, tiny_checkpoint, day1, capsys):
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "notes.txt").write_text("mine")
    argv = [
        "classify",
        "--input",
        str(write_jsonl(tmp_path / "d.jsonl", day1)),
        "--output",
        str(tmp_path / "o"),
    ]
    argv += ["--model", str(tiny_checkpoint), "--labels", LABELS, "--id-column", "id"]
    assert cli.main([*argv, "--incremental", "--state", str(tmp_path / "state")]) == cli.EXIT_USAGE
    assert "not a gliclass-pipelines output" in capsys.readouterr().err
    assert (tmp_path / "state" / "notes.txt").read_text() == "mine"


def test_delta_merge_by_id_append_overwrite_and_schema(tmp_path, tiny_checkpoint, day1, day2, capsys):
    deltalake = pytest.importorskip("deltalake")
    table = str(tmp_path / "table")
    delta = ["--output-format", "delta"]
    state = ["--incremental", "--state", str(tmp_path / "state")]
    d1, d2 = write_jsonl(tmp_path / "d1.jsonl", day1), write_jsonl(tmp_path / "d2.jsonl", day2)
    classify(tmp_path, tiny_checkpoint, d1, "table", *delta, *state)
    classify(tmp_path, tiny_checkpoint, d2, "table", *delta, *state)
    rows = deltalake.DeltaTable(table).to_pyarrow_table()
    ids = rows.column("id").to_pylist()
    assert len(ids) == len(set(ids)) == N + 3  # merged by id: one row per id (deleted ids are kept)
    history = deltalake.DeltaTable(table).history(1)[0]
    assert json.loads(history["gliclass_pipelines.provenance"])["summary"]["rows"] == 5
    argv = ["classify", "--input", str(d1), "--output", table, "--model", str(tiny_checkpoint)]
    argv += ["--labels", LABELS, "--id-column", "id", *delta]
    assert cli.main([*argv, "--mode", "append", "--output-kind", "scores"]) == cli.EXIT_USAGE
    assert "has the columns" in capsys.readouterr().err
    assert cli.main(argv) == cli.EXIT_USAGE  # exists, --mode error
    assert cli.main([*argv, "--mode", "append"]) == 0
    assert deltalake.DeltaTable(table).count() == 2 * N + 3
    assert cli.main([*argv, "--mode", "overwrite"]) == 0
    assert deltalake.DeltaTable(table).count() == N


def test_foreign_delta_table_is_overwritten_only_when_named(tmp_path, tiny_checkpoint, day1):
    deltalake = pytest.importorskip("deltalake")
    table = tmp_path / "theirs"
    deltalake.write_deltalake(str(table), pa.table({"id": [1], "text": ["x"]}))
    argv = ["classify", "--input", str(write_jsonl(tmp_path / "d.jsonl", day1)), "--output", str(table)]
    argv += [
        "--model",
        str(tiny_checkpoint),
        "--labels",
        LABELS,
        "--output-format",
        "delta",
        "--mode",
        "overwrite",
    ]
    assert cli.main(argv) == cli.EXIT_USAGE
    assert deltalake.DeltaTable(str(table)).count() == 1
    assert cli.main([*argv, "--overwrite-table", str(table)]) == 0
    assert deltalake.DeltaTable(str(table)).count() == N


def test_delta_table_as_input(tmp_path, tiny_checkpoint, day1):
    deltalake = pytest.importorskip("deltalake")
    table = tmp_path / "in"
    deltalake.write_deltalake(str(table), pa.Table.from_pylist(day1[:10]))
    deltalake.write_deltalake(str(table), pa.Table.from_pylist(day1[:5]), mode="overwrite")
    summary = classify(tmp_path, tiny_checkpoint, table, "out")
    assert summary["rows"] == 5  # the current version only, not the files the overwrite removed
    assert pq.read_table(tmp_path / "out").column("id").to_pylist() == [0, 1, 2, 3, 4]


KILLED_WRITER = """
import sys, time
import pyarrow as pa
from gliclass_pipelines.io.tables import delta
schema = pa.schema([("id", pa.int64()), ("text", pa.string())])
def batches():
    for i in range(1000):
        ids = pa.array(range(i * 5000, (i + 1) * 5000))
        yield pa.record_batch([ids, pa.array(["y" * 200] * 5000)], schema)
        if i == 5:
            print("writing", flush=True)
            time.sleep(60)
reader = pa.RecordBatchReader.from_batches(schema, batches())
from pathlib import Path
delta.write(Path(sys.argv[1]), reader, schema, mode=sys.argv[2], merge_on=None, record={})
"""


def test_kill_mid_write_leaves_the_previous_version(tmp_path):
    deltalake = pytest.importorskip("deltalake")
    from gliclass_pipelines.io.tables import delta

    table = tmp_path / "t"
    schema = pa.schema([("id", pa.int64()), ("text", pa.string())])
    first = pa.table({"id": [1, 2], "text": ["a", "b"]}, schema)
    delta.write(table, first, schema, mode="append", merge_on=None, record={})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    for mode in ("append", "overwrite"):
        command = [sys.executable, "-c", KILLED_WRITER, str(table), mode]
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, env=env, text=True)
        try:
            assert proc.stdout.readline().strip() == "writing"
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        after = deltalake.DeltaTable(str(table))
        assert after.version() == 0
        assert after.to_pyarrow_table().column("id").to_pylist() == [1, 2]
