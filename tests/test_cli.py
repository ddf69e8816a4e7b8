"""The gliclass-pipelines CLI: formats, runners, atomic commits, re-run modes, errors and exit codes."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from gliclass_pipelines import cli
from gliclass_pipelines.core.results import arrow_type

LABELS = ["libraries", "games", "science", "networking"]
N_ROWS = 40
NULL_ROW, BLANK_ROW = 3, 7


@pytest.fixture(scope="module")
def rows(debian_rows) -> list[dict]:
    rows = [{"id": r["id"], "section": r["section"], "text": r["text"]} for r in debian_rows[:N_ROWS]]
    rows[1]["id"] = "0042"  # CSV must keep it text, like Spark's CSV reader does
    rows[2]["text"] = 'a "quoted" word,\nand a second line: CSV readers must agree on both'
    rows[NULL_ROW]["text"] = None
    rows[BLANK_ROW]["text"] = "   "
    return rows


@pytest.fixture(scope="module")
def inputs(rows, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("inputs")
    table = pa.Table.from_pylist(rows)
    paths = {fmt: folder / f"packages.{fmt}" for fmt in ("parquet", "jsonl", "csv")}
    pq.write_table(table, paths["parquet"])
    paths["jsonl"].write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    pcsv.write_csv(table, paths["csv"])
    return paths


@pytest.fixture(scope="module")
def expected(rows, tiny_checkpoint) -> dict[str, dict[str, float] | None]:
    """The classifier's own results, id -> {label: score}, for the outputs to match."""
    from gliclass_pipelines.core.classifier import Classifier

    texts = [r["text"] for r in rows]
    texts[BLANK_ROW] = None  # blank and null both give a null result
    results = Classifier.load(tiny_checkpoint).classify(texts, LABELS)
    return {r["id"]: as_scores(result) for r, result in zip(rows, results)}


def as_scores(result: list[dict] | None) -> dict[str, float] | None:
    return None if result is None else {x["label"]: x["score"] for x in result}


def classify_args(source: Path, output: Path, model: Path | str, *extra: str) -> list[str]:
    return [
        "classify",
        "--input", str(source),
        "--output", str(output),
        "--text-column", "text",
        "--id-column", "id",
        "--labels", ",".join(LABELS),
        "--model", str(model),
        *extra,
    ]  # fmt: skip


def read_output(output: Path) -> list[dict]:
    return pq.read_table(output).to_pylist()


def check_output(output: Path, rows: list[dict], expected: dict, *, ordered: bool) -> list[dict]:
    got = read_output(output)
    ids = [r["id"] for r in got]
    want = [r["id"] for r in rows]
    assert (ids if ordered else sorted(ids)) == (want if ordered else sorted(want))
    for row in got:
        scores, want_scores = as_scores(row["gliclass"]), expected[row["id"]]
        if want_scores is None:
            assert scores is None, row["id"]
        else:
            assert scores == pytest.approx(want_scores, abs=1e-4), row["id"]
    success = json.loads((output / cli.SUCCESS).read_text())
    assert success["rows"] == len(rows)
    assert success["rows_per_second"] == pytest.approx(
        success["rows"] / success["seconds"], rel=0.01, abs=0.01
    )
    assert success["null_inputs"] == 2
    assert success["failed"] == 0
    assert not list(output.parent.glob(f"{output.name}.tmp-*"))
    return got


def model_loads(output: Path) -> tuple[int, float]:
    """The model loads and their seconds that a run's _SUCCESS reports."""
    success = json.loads((output / cli.SUCCESS).read_text())
    return success["model_loads"], success["model_load_seconds"]


def fresh_model(tiny_checkpoint: Path, tmp_path: Path) -> Path:
    """The tiny checkpoint at a new path: no process (this one, a Spark worker) has loaded it yet."""
    return Path(shutil.copytree(tiny_checkpoint, tmp_path / "fresh-model"))


def result_type(output: Path) -> pa.DataType:
    return pq.read_schema(cli.part_files(output)[0]).field("gliclass").type


# ----------------------------------------------------------------------------------------------------
# Local runner


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "csv"])
def test_local_runner_keeps_rows_ids_and_order(
    fmt, inputs, rows, expected, tiny_checkpoint, tmp_path, capsys
):
    output = tmp_path / "out"
    code = cli.main(classify_args(inputs[fmt], output, tiny_checkpoint, "--chunk-rows", "16"))
    out, err = capsys.readouterr()
    assert code == 0, err
    got = check_output(output, rows, expected, ordered=True)
    assert got[1]["id"] == "0042"
    assert list(got[0]) == ["id", "section", "text", "gliclass"]
    assert f"rows          {N_ROWS}" in out and "null inputs   2" in out and "model load" in out
    assert f"{N_ROWS}/{N_ROWS} rows" in err  # not a terminal here: plain progress lines
    assert result_type(output).value_type == arrow_type("labels").value_type


@pytest.mark.parametrize("newline", ["\r\n", "\r"])
def test_local_runner_reads_csv_with_any_line_ending(
    newline, inputs, rows, expected, tiny_checkpoint, tmp_path
):
    source = tmp_path / "packages.csv"
    source.write_bytes(inputs["csv"].read_bytes().replace(b"\n", newline.encode()))
    assert b"\n" not in source.read_bytes() or newline == "\r\n"
    output = tmp_path / "out"
    assert cli.main(classify_args(source, output, tiny_checkpoint)) == 0
    check_output(output, rows, expected, ordered=True)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_local_runner_reads_the_input_once(fmt, inputs, tiny_checkpoint, tmp_path, monkeypatch):
    from gliclass_pipelines.io.readers import lines as readers

    opened = []

    def counting_open(path, *args, **kwargs):
        opened.append(Path(path))
        return open(path, *args, **kwargs)

    monkeypatch.setattr(readers, "open", counting_open, raising=False)
    assert cli.main(classify_args(inputs[fmt], tmp_path / "out", tiny_checkpoint, "--progress", "log")) == 0
    assert opened == [inputs[fmt]]  # schema, rows and the progress total from one pass


def test_local_runner_reports_the_model_load_once(inputs, tiny_checkpoint, tmp_path, capsys):
    model = fresh_model(tiny_checkpoint, tmp_path)
    assert cli.main(classify_args(inputs["parquet"], tmp_path / "first", model)) == 0
    assert "model load    1 load, " in capsys.readouterr().out
    loads, seconds = model_loads(tmp_path / "first")
    assert loads == 1 and seconds > 0
    assert cli.main(classify_args(inputs["parquet"], tmp_path / "again", model)) == 0
    assert "model load    0 loads, 0.0s" in capsys.readouterr().out  # this process had it loaded
    assert model_loads(tmp_path / "again") == (0, 0.0)


def test_local_runner_writes_several_parts_in_order(inputs, rows, expected, tiny_checkpoint, tmp_path):
    output = tmp_path / "out"
    extra = ("--chunk-rows", "7", "--rows-per-file", "15")
    assert cli.main(classify_args(inputs["parquet"], output, tiny_checkpoint, *extra)) == 0
    assert [p.name for p in cli.part_files(output)] == [
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    check_output(output, rows, expected, ordered=True)


def test_local_runner_per_row_labels(rows, tiny_checkpoint, tmp_path):
    source = tmp_path / "rows.jsonl"
    candidates = [LABELS[:2], LABELS[2:], ["games"]]
    with open(source, "w") as handle:
        for i, row in enumerate(rows[:12]):
            handle.write(json.dumps({**row, "candidates": candidates[i % 3]}) + "\n")
    args = classify_args(source, tmp_path / "out", tiny_checkpoint, "--threshold", "0")
    args[args.index("--labels") : args.index("--labels") + 2] = ["--labels-column", "candidates"]
    assert cli.main(args) == 0
    got = read_output(tmp_path / "out")
    assert len(got) == 12
    for row in got:
        if row["gliclass"] is not None:
            assert sorted(x["label"] for x in row["gliclass"]) == sorted(row["candidates"])


PROMPT_CELLS = ["Which software topic is this?", None, "Classify the package:"]
THRESHOLD_CELLS = [0.0, None, 0.9, 0.2]
BAD_CELL_ROW = 5


@pytest.mark.parametrize("runner", ["local", "beam", pytest.param("spark", marks=pytest.mark.spark)])
def test_prompt_and_threshold_columns(runner, rows, tiny_checkpoint, tmp_path, request):
    """--prompt-column and --threshold-column: each row's own prompt and threshold; a null cell takes the
    job's, a bad cell fails only its row, and the results equal the core's on the same cells."""
    from gliclass_pipelines.core.classifier import Classifier
    from gliclass_pipelines.core.config import ClassifyConfig

    if runner == "spark":
        request.getfixturevalue("spark")
    cells = [
        {**r, "prompt": PROMPT_CELLS[i % 3], "cut": 2.0 if i == BAD_CELL_ROW else THRESHOLD_CELLS[i % 4]}
        for i, r in enumerate(rows[:12])
    ]
    source = tmp_path / "rows.parquet"
    pq.write_table(pa.Table.from_pylist(cells), source)
    extra = (
        "--prompt-column",
        "prompt",
        "--threshold-column",
        "cut",
        "--threshold",
        "0.3",
        "--runner",
        runner,
    )
    assert cli.main(classify_args(source, tmp_path / "out", tiny_checkpoint, *extra)) == 0
    got = {row["id"]: row["gliclass"] for row in read_output(tmp_path / "out")}
    config = ClassifyConfig(model=str(tiny_checkpoint), labels=LABELS, threshold=0.3)
    texts, prompts, cuts = ([c[key] for c in cells] for key in ("text", "prompt", "cut"))
    want, out = config.classify(
        texts, row_prompts=prompts, row_thresholds=cuts, classifier=Classifier.load(tiny_checkpoint)
    )
    assert got.keys() == {c["id"] for c in cells}
    for cell, record in zip(cells, want):
        assert as_scores(got[cell["id"]]) == pytest.approx(as_scores(record), abs=1e-4), cell["id"]
    assert got[cells[BAD_CELL_ROW]["id"]] is None and out.outcomes[BAD_CELL_ROW].code == "invalid_option"
    success = json.loads((tmp_path / "out" / cli.SUCCESS).read_text())
    assert (success["failed"], success["null_inputs"]) == (1, 2)
    assert want[0] != config.classify(texts[:1], classifier=Classifier.load(tiny_checkpoint))[0][0]


def test_local_runner_reads_a_map_labels_column_as_each_rows_hierarchy(
    rows, tiny_checkpoint, tmp_path, capsys
):
    """Parquet maps come out of Arrow as (key, value) pairs; each becomes the row's hierarchy again."""
    source = tmp_path / "rows.parquet"
    trees = [{"software": ["games", "libraries"]}, {"topic": ["science"], "net": ["web"]}]
    table = pa.Table.from_pylist(
        [{**row, "tree": list(trees[i % 2].items())} for i, row in enumerate(rows[:6])],
        schema=pa.schema([("id", pa.string()), ("section", pa.string()), ("text", pa.string()),
                          ("tree", pa.map_(pa.string(), pa.list_(pa.string())))]),
    )  # fmt: skip
    pq.write_table(table, source)
    args = classify_args(source, tmp_path / "out", tiny_checkpoint, "--threshold", "0")
    args[args.index("--labels") : args.index("--labels") + 2] = ["--labels-column", "tree"]
    assert cli.main(args) == 0
    from gliclass_pipelines import Classifier

    clf = Classifier.load(str(tiny_checkpoint), device="cpu")
    for i, row in enumerate(read_output(tmp_path / "out")):
        want = clf.classify([row["text"]], trees[i % 2], threshold=0.0)[0]
        assert as_scores(row["gliclass"]) == pytest.approx(as_scores(want), abs=1e-5)
    beam = classify_args(source, tmp_path / "beam", tiny_checkpoint, "--runner", "beam")
    beam[beam.index("--labels") : beam.index("--labels") + 2] = ["--labels-column", "tree"]
    capsys.readouterr()
    assert cli.main(beam) == cli.EXIT_USAGE
    assert "use --runner local or spark" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------
# Re-runs: --mode


@pytest.fixture
def done(inputs, tiny_checkpoint, tmp_path) -> Path:
    output = tmp_path / "out"
    assert cli.main(classify_args(inputs["jsonl"], output, tiny_checkpoint)) == 0
    return output


def test_mode_error_refuses_to_overwrite(done, inputs, tiny_checkpoint, capsys):
    before = (done / cli.SUCCESS).read_text()
    capsys.readouterr()
    assert cli.main(classify_args(inputs["jsonl"], done, tiny_checkpoint)) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "already exists" in err and "--mode overwrite" in err
    assert (done / cli.SUCCESS).read_text() == before


def test_mode_skip_existing_skips_a_complete_output_without_loading(done, inputs, capsys):
    before = (done / cli.SUCCESS).read_text()
    args = classify_args(inputs["jsonl"], done, "/no/such/model", "--mode", "skip-existing")
    assert cli.main(args) == 0
    assert "skipped" in capsys.readouterr().out
    assert (done / cli.SUCCESS).read_text() == before


def test_mode_skip_existing_redoes_an_incomplete_output(done, inputs, rows, expected, tiny_checkpoint):
    (done / cli.SUCCESS).unlink()
    args = classify_args(inputs["jsonl"], done, tiny_checkpoint, "--mode", "skip-existing")
    assert cli.main(args) == 0
    check_output(done, rows, expected, ordered=True)


def test_mode_overwrite_replaces_the_output(done, inputs, tiny_checkpoint):
    args = classify_args(inputs["jsonl"], done, tiny_checkpoint, "--mode", "overwrite", "--threshold", "0")
    args[args.index("--labels") + 1] = "alpha,beta"
    assert cli.main(args) == 0
    labels = {x["label"] for row in read_output(done) for x in row["gliclass"] or []}
    assert labels == {"alpha", "beta"}
    assert sorted(p.name for p in done.parent.iterdir()) == ["out"]


# ----------------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--labels": "games,Games"}, "duplicate label"),
        ({"--labels": "missing.yaml"}, "does not exist"),
        ({"--threshold": "1.5"}, "threshold"),
        ({"--text-column": "body"}, "'body' is not a column"),
        ({"--id-column": "key"}, "'key' is not a column"),
        ({"--result-column": "section"}, "already has a column 'section'"),
        ({"--input": "/no/such/file.jsonl"}, "does not exist"),
        ({"--input": "data.txt"}, "cannot tell the format"),
        ({"--spark-conf": "no-equals-sign"}, "KEY=VALUE"),
        ({"--threshold-column": "text"}, "--threshold-column 'text' holds string, not numbers"),
        ({"--prompt-column": "nope"}, "--prompt-column 'nope' is not a column"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(change, message, inputs, tiny_checkpoint, tmp_path, capsys):
    if change.get("--input") == "data.txt":
        change["--input"] = str(tmp_path / "data.txt")
        Path(change["--input"]).write_text("x\n")
    args = classify_args(inputs["jsonl"], tmp_path / "out", tiny_checkpoint)
    for option, value in change.items():
        if option in args:
            args[args.index(option) + 1] = value
        else:
            args += [option, value]
    assert cli.main(args) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_missing_model_exits_3(inputs, tmp_path, capsys):
    assert cli.main(classify_args(inputs["jsonl"], tmp_path / "out", tmp_path / "nowhere")) == cli.EXIT_MODEL
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob("out.tmp-*"))


CLUSTER_RUNNERS = {
    "spark": ("--runner", "spark", "--spark-master", "spark://127.0.0.1:9"),
    "beam": (
        "--runner",
        "beam",
        "--beam-runner",
        "PortableRunner",
        "--beam-option",
        "job_endpoint=127.0.0.1:9",
    ),
}


@pytest.mark.parametrize("runner", sorted(CLUSTER_RUNNERS))
def test_missing_model_on_a_cluster_runner_exits_3_before_the_engine(inputs, tmp_path, capsys, runner):
    """A cluster master or job service (here none listens) was never reached: the model is checked first."""
    args = classify_args(inputs["jsonl"], tmp_path / "out", tmp_path / "nowhere", *CLUSTER_RUNNERS[runner])
    assert cli.main(args) == cli.EXIT_MODEL
    err = capsys.readouterr().err
    assert "does not exist" in err and len(err.strip().splitlines()) == 1


def test_an_unreachable_beam_job_service_times_out(inputs, tmp_path, capsys, tiny_checkpoint):
    extra = (*CLUSTER_RUNNERS["beam"], "--beam-option", "job_server_timeout=2")
    assert (
        cli.main(classify_args(inputs["jsonl"], tmp_path / "out", tiny_checkpoint, *extra)) == cli.EXIT_FAILED
    )
    err = capsys.readouterr().err
    assert "job service at 127.0.0.1:9 did not answer within 2 s" in err
    assert not (tmp_path / "out").exists()


def command() -> list[str]:
    script = Path(sys.executable).parent / "gliclass-pipelines"
    return [str(script)] if script.exists() else [sys.executable, "-m", "gliclass_pipelines.cli"]


def test_unreachable_hub_says_how_to_use_a_local_checkpoint(inputs, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    args = classify_args(inputs["jsonl"], tmp_path / "out", "knowledgator/gliclass-edge-v3.0")
    done = subprocess.run(command() + args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == cli.EXIT_MODEL, done.stderr
    assert "make-test-model" in done.stderr and "local checkpoint directory" in done.stderr
    assert "Traceback" not in done.stderr


# ----------------------------------------------------------------------------------------------------
# Killed runs


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(command() + args, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def wait_for_progress(process: subprocess.Popen, temp_glob: tuple[Path, str]) -> None:
    """Read stderr until a progress line shows and a part file is in the temporary directory."""
    folder, pattern = temp_glob
    seen = []
    for line in process.stderr:
        seen.append(line)
        if " rows (" in line and list(folder.glob(pattern + "/part-*.parquet")):
            return
    pytest.fail("the CLI ended before it made progress:\n" + "".join(seen))


@pytest.fixture(scope="module")
def big_input(tmp_path_factory) -> tuple[Path, list[str]]:
    from conftest import read_jsonl

    rows = read_jsonl("pypi_summaries.jsonl", 400)
    path = tmp_path_factory.mktemp("big") / "big.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path, [r["id"] for r in rows]


def big_args(source: Path, output: Path, model: Path) -> list[str]:
    extra = ("--chunk-rows", "25", "--rows-per-file", "50", "--progress", "log", "--log-every", "0")
    return classify_args(source, output, model, *extra)


def test_killed_run_leaves_nothing_complete_and_rerun_completes(big_input, tiny_checkpoint, tmp_path):
    source, ids = big_input
    output = tmp_path / "out"
    process = start(big_args(source, output, tiny_checkpoint))
    try:
        wait_for_progress(process, (tmp_path, "out.tmp-*"))
        process.kill()
    finally:
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert not output.exists()
    assert not list(tmp_path.rglob(cli.SUCCESS))
    left = list(tmp_path.glob("out.tmp-*"))
    assert len(left) == 1 and cli.part_files(left[0])  # partial parts, never where readers look

    assert cli.main(big_args(source, output, tiny_checkpoint)) == 0
    assert [r["id"] for r in read_output(output)] == ids
    assert json.loads((output / cli.SUCCESS).read_text())["rows"] == len(ids)
    assert not list(tmp_path.glob("out.tmp-*"))  # the dead run's directory is cleaned up


def test_terminated_run_removes_its_temporary_directory(big_input, tiny_checkpoint, tmp_path):
    source, _ = big_input
    process = start(big_args(source, tmp_path / "out", tiny_checkpoint))
    try:
        wait_for_progress(process, (tmp_path, "out.tmp-*"))
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 143, err
    assert "terminated" in err
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------------------------
# Progress and make-test-model


def test_progress_log_lines_show_rows_rate_and_eta(capsys):
    with cli.Progress(total=100, style="log", every=3600) as progress:
        progress.update(10)
        progress.update(10)  # within `every` seconds: no line until the last
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    assert "10/100 rows (10%)" in lines[0] and "rows/s" in lines[0] and "ETA" in lines[0]
    assert "20/100 rows (20%)" in lines[1]


def test_progress_bar_on_a_terminal(capsys):
    with cli.Progress(total=100, style="bar", every=0) as progress:
        progress.update(40)
    err = capsys.readouterr().err
    assert "40/100" in err and "rows/s" in err.replace(" rows/s", "rows/s")


def test_progress_estimates_the_total_from_the_share_read(capsys):
    with cli.Progress(total=None, style="log", every=3600) as progress:
        progress.update(10, 0.25)
        progress.update(30, 1.0)
    lines = capsys.readouterr().err.splitlines()
    assert "10/~40 rows (25%)" in lines[0] and "40/40 rows (100%)" in lines[-1]


def test_every_flag_has_help_and_help_states_rows_per_second(capsys):
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name in ("classify", "make-test-model"):
        for action in commands.choices[name]._actions:
            assert action.help, (name, action.option_strings or action.dest)
    with pytest.raises(SystemExit) as done:
        cli.main(["classify", "--help"])
    assert done.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "rows/s: rows over the seconds since the job started" in out
    assert "--runner {local,spark,beam}" in out and "--output-kind {labels,top,scores,hierarchical}" in out


def test_make_test_model_writes_a_loadable_checkpoint(tmp_path, capsys):
    from gliclass_pipelines.core.classifier import Classifier

    assert cli.main(["make-test-model", str(tmp_path / "tiny")]) == 0
    assert "GLICLASS_MODEL=" in capsys.readouterr().out
    results = Classifier.load(tmp_path / "tiny").classify(
        ["a chess engine"], ["games", "science"], threshold=0
    )
    assert {x["label"] for x in results[0]} == {"games", "science"}


def test_make_test_model_files_are_readable_by_other_users(tmp_path, capsys):
    """Executors running as another user could not read the weights (0600); a file that was already in
    the folder keeps its mode."""
    target = tmp_path / "tiny"
    target.mkdir(mode=0o700)
    mine = target / "notes.txt"
    mine.write_text("kept")
    mine.chmod(0o600)
    assert cli.main(["make-test-model", str(target)]) == 0
    modes = {p.name: p.stat().st_mode & 0o777 for p in target.rglob("*")}
    assert modes.pop("notes.txt") == 0o600 and target.stat().st_mode & 0o777 == 0o700
    assert "model.safetensors" in modes and set(modes.values()) <= {0o644, 0o755}


# ----------------------------------------------------------------------------------------------------
# Spark and Beam runners


@pytest.mark.spark
@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "csv"])
def test_spark_runner(fmt, spark, inputs, rows, expected, tiny_checkpoint, tmp_path, capsys):
    local, output = tmp_path / "local", tmp_path / "spark"
    assert cli.main(classify_args(inputs[fmt], local, tiny_checkpoint)) == 0
    code = cli.main(classify_args(inputs[fmt], output, tiny_checkpoint, "--runner", "spark"))
    out, err = capsys.readouterr()
    assert code == 0, err
    got = check_output(output, rows, expected, ordered=False)
    assert list(got[0]) == ["id", "section", "text", "gliclass"]
    assert result_type(output) == result_type(local)  # the same Parquet schema from both runners
    assert pq.read_schema(cli.part_files(output)[0]).field("id").type == pa.string()
    assert "done with the spark runner" in out and f"rows          {N_ROWS}" in out
    truncated = [json.loads((path / cli.SUCCESS).read_text())["truncated"] for path in (local, output)]
    assert truncated[0] == truncated[1] > 0  # the engine's own RunStats, through an accumulator


@pytest.mark.spark
def test_spark_runner_reports_the_executors_model_loads(spark, inputs, tiny_checkpoint, tmp_path, capsys):
    model = fresh_model(tiny_checkpoint, tmp_path)
    assert cli.main(classify_args(inputs["parquet"], tmp_path / "out", model, "--runner", "spark")) == 0
    loads, seconds = model_loads(tmp_path / "out")
    assert loads == 1  # one small Parquet file is one task, so one Python worker loads the new model
    assert 0 < seconds < json.loads((tmp_path / "out" / cli.SUCCESS).read_text())["seconds"]
    assert "model load    1 load, " in capsys.readouterr().out


@pytest.mark.spark
def test_spark_runner_per_row_labels_from_csv_text(spark, rows, tiny_checkpoint, tmp_path):
    source = tmp_path / "rows.csv"
    table = pa.Table.from_pylist([{**r, "candidates": "games, science"} for r in rows[:10]])
    pcsv.write_csv(table, source)
    args = classify_args(source, tmp_path / "out", tiny_checkpoint, "--runner", "spark", "--threshold", "0")
    args[args.index("--labels") : args.index("--labels") + 2] = ["--labels-column", "candidates"]
    assert cli.main(args) == 0
    got = read_output(tmp_path / "out")
    assert len(got) == 10 and list(got[0]) == ["id", "section", "text", "candidates", "gliclass"]
    assert {x["label"] for x in got[0]["gliclass"]} == {"games", "science"}


@pytest.mark.spark
def test_local_and_spark_read_empty_csv_fields_alike(spark, tiny_checkpoint, tmp_path):
    source = tmp_path / "rows.csv"
    source.write_text("id,section,text\n001,,a chess engine\n002,libs,\n003,net,a web server\n")
    local, output = tmp_path / "local", tmp_path / "spark"
    assert cli.main(classify_args(source, local, tiny_checkpoint)) == 0
    assert cli.main(classify_args(source, output, tiny_checkpoint, "--runner", "spark")) == 0
    got = {
        name: sorted(read_output(path), key=lambda r: r["id"]) for name, path in (("l", local), ("s", output))
    }
    assert [(r["id"], r["section"], r["text"]) for r in got["l"]] == [
        ("001", None, "a chess engine"),
        ("002", "libs", None),
        ("003", "net", "a web server"),
    ]
    assert [(r["id"], r["section"], r["text"]) for r in got["s"]] == [
        (r["id"], r["section"], r["text"]) for r in got["l"]
    ]


@pytest.mark.spark
def test_spark_runner_keeps_going_past_a_broken_json_line(spark, rows, tiny_checkpoint, tmp_path):
    source = tmp_path / "rows.jsonl"
    lines = [json.dumps(r) for r in rows[:8]] + ['{"id": "cut", "text": "cut off in the mid']
    source.write_text("\n".join(lines), encoding="utf-8")
    local, output = tmp_path / "local", tmp_path / "spark"
    assert cli.main(classify_args(source, local, tiny_checkpoint)) == 0
    assert cli.main(classify_args(source, output, tiny_checkpoint, "--runner", "spark")) == 0
    got = read_output(output)
    assert len(got) == len(read_output(local)) == 9
    assert list(got[0]) == list(read_output(local)[0]) == ["id", "section", "text", "gliclass"]


@pytest.mark.beam
def test_beam_runner_on_jsonl(inputs, rows, expected, tiny_checkpoint, tmp_path, capsys):
    pytest.importorskip("apache_beam")
    local, output = tmp_path / "local", tmp_path / "beam"
    assert cli.main(classify_args(inputs["jsonl"], local, tiny_checkpoint)) == 0
    code = cli.main(classify_args(inputs["jsonl"], output, tiny_checkpoint, "--runner", "beam"))
    out, err = capsys.readouterr()
    assert code == 0, err
    got = check_output(output, rows, expected, ordered=False)
    assert list(got[0]) == ["id", "section", "text", "gliclass"]
    assert result_type(output) == result_type(local)
    assert "done with the beam runner" in out
    truncated = [json.loads((path / cli.SUCCESS).read_text())["truncated"] for path in (local, output)]
    assert truncated[0] == truncated[1] > 0  # the engine's own RunStats, from Beam's metrics


@pytest.mark.beam
def test_beam_runner_reports_the_model_load_once(inputs, tiny_checkpoint, tmp_path, capsys):
    pytest.importorskip("apache_beam")
    model = fresh_model(tiny_checkpoint, tmp_path)
    assert cli.main(classify_args(inputs["jsonl"], tmp_path / "first", model, "--runner", "beam")) == 0
    assert "model load    1 load, " in capsys.readouterr().out
    loads, seconds = model_loads(tmp_path / "first")
    assert loads == 1 and seconds > 0  # from the model_loads and model_load_ms counters
    assert cli.main(classify_args(inputs["jsonl"], tmp_path / "again", model, "--runner", "beam")) == 0
    assert model_loads(tmp_path / "again") == (0, 0.0)  # FnApiRunner: this process's registry had it
