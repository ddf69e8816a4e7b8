"""Every example in examples/ runs against a tiny checkpoint; the demo's offline message names the fix."""

from __future__ import annotations

import json
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
SAMPLE_IDS = [
    json.loads(line)["id"] for line in (EXAMPLES / "data" / "sample.jsonl").read_text().splitlines()
]
TIMEOUT = 600


def example_env(model: Path | None, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
        "TOKENIZERS_PARALLELISM": "false",
    }
    env.pop("GLICLASS_MODEL", None)
    if model is not None:
        env["GLICLASS_MODEL"] = str(model)
    return {**env, **extra}


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT)


def example(name: str) -> list[str]:
    return [sys.executable, str(EXAMPLES / name)]


# ----------------------------------------------------------------------------------------------------
# The README's demo


def test_demo_prints_a_table_of_texts_and_labels(tiny_checkpoint, tmp_path):
    done = run(example("demo.py") + ["--output", str(tmp_path / "out")], example_env(tiny_checkpoint))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("text ") and "| labels" in line)
    rows = lines[header + 2 :]
    assert len(rows) == len(SAMPLE_IDS)
    assert all(
        re.search(r" \| ((topic|kind)\.[a-z ]+ \d\.\d\d|\(none over threshold\))", row) for row in rows
    )
    assert any("topic." in row for row in rows)
    assert "rows          20" in done.stdout
    assert (tmp_path / "out" / "_SUCCESS").is_file()
    assert pq.read_table(tmp_path / "out").column("id").to_pylist() == SAMPLE_IDS


def test_demo_offline_says_how_to_use_a_local_checkpoint(tmp_path):
    env = example_env(None, HF_HOME=str(tmp_path / "empty-cache"))
    done = run(example("demo.py") + ["--output", str(tmp_path / "out")], env)
    assert done.returncode != 0
    assert "knowledgator/gliclass-edge-v3.0" in done.stderr
    assert "HF_HUB_OFFLINE is set" in done.stderr
    assert "make-test-model /tmp/tiny-gliclass && GLICLASS_MODEL=/tmp/tiny-gliclass make demo" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_demo_with_an_unreachable_hub_says_so(tmp_path):
    env = example_env(
        None, HF_HOME=str(tmp_path / "empty-cache"), HF_HUB_OFFLINE="0", HF_ENDPOINT="http://127.0.0.1:9"
    )
    done = run(example("demo.py") + ["--output", str(tmp_path / "out")], env)
    assert done.returncode != 0
    assert "could not be reached" in done.stderr
    assert "GLICLASS_MODEL=/tmp/tiny-gliclass make demo" in done.stderr
    assert "HF_HUB_OFFLINE=0" not in done.stderr  # the variable is not set to 1: no advice to unset it
    assert "Traceback" not in done.stderr


# ----------------------------------------------------------------------------------------------------
# The CLI on Parquet, and Beam


def test_cli_parquet_example(tiny_checkpoint, tmp_path):
    script = Path(sys.executable).parent / "gliclass-pipelines"
    if not script.exists():
        pytest.skip("the gliclass-pipelines console script is not installed next to this Python")
    env = example_env(tiny_checkpoint, PYTHON=sys.executable, GLICLASS_CLI=str(script))
    done = run(["bash", str(EXAMPLES / "cli_parquet.sh"), str(tmp_path)], env)
    assert done.returncode == 0, done.stderr
    printed = [
        line.split()[0] for line in done.stdout.splitlines() if line.split() and line.split()[0] in SAMPLE_IDS
    ]
    assert printed == SAMPLE_IDS
    assert (tmp_path / "labelled" / "_SUCCESS").is_file()


@pytest.mark.beam
def test_beam_batch_example(tiny_checkpoint, tmp_path):
    done = run(example("beam_batch.py") + ["--output", str(tmp_path)], example_env(tiny_checkpoint))
    assert done.returncode == 0, done.stderr
    printed = [line.split()[0] for line in done.stdout.splitlines() if line.strip()]
    assert sorted(printed) == sorted(SAMPLE_IDS)
    results = [
        json.loads(line) for p in tmp_path.glob("results-*.jsonl") for line in p.read_text().splitlines()
    ]
    assert sorted(r["id"] for r in results) == sorted(SAMPLE_IDS)
    assert all(isinstance(r["labels"], list) for r in results)
    assert "".join(p.read_text() for p in tmp_path.glob("dead_letters-*.jsonl")) == ""


@pytest.mark.beam
def test_beam_streaming_example(tiny_checkpoint):
    done = run(example("beam_streaming.py"), example_env(tiny_checkpoint))
    assert done.returncode == 0, done.stderr
    counts = re.findall(r"^window (\d\d:\d\d:\d\d)-\d\d:\d\d:\d\d  (.+): (\d+)$", done.stdout, re.MULTILINE)
    assert sum(int(n) for _, _, n in counts) == len(SAMPLE_IDS)
    assert len({start for start, _, _ in counts}) == 5  # 20 events 15 s apart: five one-minute windows


# ----------------------------------------------------------------------------------------------------
# Spark: in the session-wide `spark` fixture (tests/conftest.py); as scripts (their own JVM) in the slow test


def load_example(name: str, model: Path, monkeypatch) -> dict:
    monkeypatch.setenv("GLICLASS_MODEL", str(model))
    return runpy.run_path(str(EXAMPLES / name), run_name="example")


@pytest.mark.spark
def test_spark_quickstart_example(spark, tiny_checkpoint, monkeypatch):
    module = load_example("spark_quickstart.py", tiny_checkpoint, monkeypatch)
    rows = module["main"](spark).select("id", "labels").collect()
    assert sorted(r["id"] for r in rows) == sorted(SAMPLE_IDS)
    labels = [x for r in rows for x in r["labels"]]
    assert labels and all(x["label"] in module["LABELS"] and x["score"] >= 0.5 for x in labels)


@pytest.mark.spark
def test_spark_per_row_labels_example(spark, tiny_checkpoint, monkeypatch):
    module = load_example("spark_per_row_labels.py", tiny_checkpoint, monkeypatch)
    rows = module["main"](spark).collect()
    assert sorted(r["id"] for r in rows) == sorted(SAMPLE_IDS)
    for row in rows:
        assert row["best"]["label"] in row["candidates"]
        assert row["candidates"] == (module["DEBIAN"] if row["source"] == "debian" else module["PYPI"])


SPARK_SCRIPTS = ["spark_quickstart.py", "spark_per_row_labels.py"]
AS_SCRIPTS = """
import runpy, sys
for path in sys.argv[1:]:
    print("=== " + path, flush=True)
    sys.argv, sys.path[0] = [path], path.rsplit("/", 1)[0]  # as `python examples/<name>` sets them
    runpy.run_path(path, run_name="__main__")
"""


@pytest.mark.spark
@pytest.mark.slow
def test_spark_examples_as_scripts(tiny_checkpoint):
    """Each Spark example's __main__ block (which starts and stops its own local[2] session), run one
    after the other in one fresh Python process: one interpreter and JVM start for both, not one each."""
    paths = [str(EXAMPLES / name) for name in SPARK_SCRIPTS]
    done = run([sys.executable, "-c", AS_SCRIPTS, *paths], example_env(tiny_checkpoint))
    assert done.returncode == 0, done.stderr
    printed = done.stdout.split("=== ")[1:]
    assert [out.splitlines()[0] for out in printed] == paths
    for out in printed:
        assert sum(identifier in out for identifier in SAMPLE_IDS) == len(SAMPLE_IDS), out
