"""The Spark adapter on real Spark: local[2], local-cluster with fake GPUs, Spark Connect, streaming,
and spark-submit of the job in spark/.

The local-cluster and Spark Connect checks each need a session of their own, so one subprocess runs
this file as a script for both, one after the other (``python tests/test_spark.py connect,cluster MODEL
WORKDIR``), and writes their findings as JSON. That subprocess and the spark-submit test start their own
JVMs and Python workers (each worker imports torch and transformers), a minute or more each on two
cores, so they are marked slow. Everything else shares the session-wide ``spark`` fixture (conftest.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pyspark")
pytest.importorskip("pandas")

from integrations_support import plain  # noqa: E402

pytestmark = pytest.mark.spark

ROOT = Path(__file__).resolve().parents[1]
LABELS = ["perl", "libraries", "python", "games", "networking", "documentation"]
SCORE_TOLERANCE = 1e-5  # Spark returns float32, and batches are cut differently than in-process

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)


def spark_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.update(PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def model(tiny_checkpoint) -> str:
    return str(tiny_checkpoint)


@pytest.fixture(scope="module")
def classifier(model):
    """The in-process oracle. One thread: on a busy 2-core machine two threads run 10x slower."""
    import torch

    from gliclass_pipelines import Classifier

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield Classifier.load(model, device="cpu")
    torch.set_num_threads(threads)


def expected(classifier, texts, output: str = "labels", labels=LABELS, threshold: float = 0.5) -> list[Any]:
    from gliclass_pipelines.core.results import needs_all_labels, shape

    results = classifier.classify(texts, labels, threshold=threshold, return_all=needs_all_labels(output))
    return shape(results, output)


def assert_same(actual: Any, want: Any, output: str, what: str = "") -> None:
    got, want = plain(actual, output), plain(want, output)
    if want is None or got is None:
        assert got == want, what
        return
    if output == "scores":
        assert got.keys() == want.keys(), what
        pairs = [(got[k], want[k]) for k in want]
    elif output == "top":
        assert got[0] == want[0], what
        pairs = [(got[1], want[1])]
    else:
        assert [x[0] for x in got] == [x[0] for x in want], what
        pairs = [(g[1], w[1]) for g, w in zip(got, want)]
    for g, w in pairs:
        assert g == pytest.approx(w, abs=SCORE_TOLERANCE), what


def default_device(gpu: str | None = None) -> str:
    """The device a worker on this machine should pick for a task assigned `gpu`."""
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    return f"cuda:{gpu}" if gpu is not None and int(gpu) < torch.cuda.device_count() else "cuda:0"


def text_frame(spark, rows: list[tuple[Any, Any]], partitions: int = 2):
    return spark.createDataFrame(rows, "id long, text string").repartition(partitions)


# ------------------------------------------------------------------------------------------------------
# Driver side


def test_config_is_validated_on_the_driver(model):
    from gliclass_pipelines import ConfigError
    from gliclass_pipelines.spark.udf import gliclass_udf

    bad = [
        {"labels": LABELS, "model": "not a model id!"},
        {"labels": ["a", "A"], "model": model},
        {"labels": [], "model": model},
        {"labels": LABELS, "model": model, "threshold": 2},
        {"labels": LABELS, "model": model, "output": "probabilities"},
        {"labels": LABELS, "model": model, "device": "gpu0"},
        {"labels": LABELS, "model": model, "dtype": "int8"},
        {"labels": LABELS, "model": model, "labels_col": "labels"},
        {"labels": LABELS, "model": model, "not_an_option": 1},
        {"model": model},
    ]
    for kwargs in bad:
        with pytest.raises(ConfigError):
            gliclass_udf("text", **kwargs)


def test_udf_closure_holds_only_the_config(spark, model):
    import pickle

    from pyspark import cloudpickle

    from gliclass_pipelines.core.config import ClassifyConfig
    from gliclass_pipelines.spark.udf import _pandas_udf

    config = ClassifyConfig.from_settings(model, LABELS)
    function = _pandas_udf(config).func
    cells = [c.cell_contents for c in function.__closure__]
    assert {type(c) for c in cells} == {ClassifyConfig, type(None), tuple}  # the config, no stats, cells
    payload = cloudpickle.dumps(function)
    assert len(payload) < 20_000
    loaded = [c.cell_contents for c in pickle.loads(payload).__closure__]
    assert [c for c in loaded if isinstance(c, ClassifyConfig)] == [config]


def test_classify_dataframe_checks_columns(spark, model):
    from gliclass_pipelines import ConfigError
    from gliclass_pipelines.spark.udf import classify_dataframe

    df = spark.createDataFrame([(1, "a text")], "id long, text string")
    with pytest.raises(ConfigError, match="not a column"):
        classify_dataframe(df, "body", model=model, labels=LABELS)
    with pytest.raises(ConfigError, match="must be string"):
        classify_dataframe(df, "id", model=model, labels=LABELS)
    with pytest.raises(ConfigError, match=r"array<string> or map<string,\.\.\.> or array<map<string"):
        classify_dataframe(df, "text", model=model, labels_col="text")


def test_settings_and_config_paths_agree(model):
    from gliclass_pipelines import ConfigError
    from gliclass_pipelines.core.config import ClassifyConfig

    built = ClassifyConfig.from_settings(model, LABELS, threshold=0.3, output="top", prompt="Kind?")
    assert built == ClassifyConfig(model, LABELS, threshold=0.3, output="top", options={"prompt": "Kind?"})
    assert built.options == {"prompt": "Kind?"}
    with pytest.raises(ConfigError, match="unknown setting.*thresold"):
        ClassifyConfig.from_settings(model, LABELS, thresold=0.3)


def test_batch_results_are_checked_against_their_rows():
    import pandas as pd

    from gliclass_pipelines import GLiClassPipelinesError
    from gliclass_pipelines.core.outcomes import RowOutcome
    from gliclass_pipelines.spark.tasks import check_rows, row_identity

    texts = ["a text", None, "another"]
    identity = row_identity(texts)
    ok, null = RowOutcome.ok(), RowOutcome.null_input("null text")
    results = pd.Series([[{"label": "x", "score": 0.9}], None, []], dtype=object)
    check_rows(identity, texts, [ok, null, ok], results)
    wrong = [
        (texts, [ok, null], results[:2]),  # a row lost
        (texts, [ok, ok, null], results),  # a null input with a result, a row without
        (["a text", None, "changed"], [ok, null, ok], results),  # a text changed under us
        (texts, [ok, null, ok], results[::-1]),  # reordered
        (texts, [RowOutcome.failed("bad"), null, ok], results),  # a failed row with a result
    ]
    for rows, outcomes, series in wrong:
        with pytest.raises(GLiClassPipelinesError, match="internal error"):
            check_rows(identity, rows, outcomes, series)


def test_engine_device_uses_the_assigned_gpu_only_when_cuda_can(monkeypatch):
    import torch

    from gliclass_pipelines.spark.tasks import engine_device

    assert engine_device(None) is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert engine_device("1") == "cuda:1"
    assert engine_device("2") is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert engine_device("0") is None


def test_discovery_script_lists_nvidia_smi_indices(tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 0\necho ' 3'\n")
    fake.chmod(0o755)
    script = ROOT / "spark" / "get_gpus_resources.sh"
    env = dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}")
    out = subprocess.run([str(script)], env=env, capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == {"name": "gpu", "addresses": ["0", "3"]}


# ------------------------------------------------------------------------------------------------------
# local[2]


@pytest.mark.parametrize("output", ["labels", "top", "scores"])
def test_udf_equals_classifier(spark, model, classifier, debian_texts, output):
    from gliclass_pipelines.spark.udf import gliclass_udf

    texts = debian_texts[:150] + [None, "   "]
    df = text_frame(spark, list(enumerate(texts)))
    rows = df.select(
        "id", gliclass_udf("text", model=model, labels=LABELS, output=output).alias("r")
    ).collect()
    got = {row.id: row.r for row in rows}
    want = expected(classifier, texts, output)
    assert sorted(got) == list(range(len(texts)))
    for i, record in enumerate(want):
        assert_same(got[i], record, output, f"row {i}")
    assert got[len(texts) - 2] is None and got[len(texts) - 1] is None
    assert sum(r is not None for r in got.values()) == 150


def test_null_texts_give_null(spark, model):
    from gliclass_pipelines.spark.udf import gliclass_udf

    rows = [(0, None), (1, ""), (2, None), (3, "A game about space ships.")]
    df = text_frame(spark, rows, partitions=1)
    for output in ("labels", "top", "scores"):
        got = dict(df.select("id", gliclass_udf("text", model=model, labels=LABELS, output=output)).collect())
        assert [got[i] is None for i in range(4)] == [True, True, True, False], output


def test_per_row_labels(spark, model, classifier, debian_texts):
    from gliclass_pipelines.spark.udf import gliclass_udf

    label_sets = [["perl", "games"], ["python"], None, [], ["a", "a"], ["ok", None], ["", "x"], LABELS]
    rows = [(i, debian_texts[i], label_sets[i % len(label_sets)]) for i in range(40)] + [(40, None, ["x"])]
    df = spark.createDataFrame(rows, "id long, text string, labels array<string>").repartition(3)
    for output in ("labels", "top", "scores"):
        column = gliclass_udf("text", model=model, labels_col="labels", output=output, threshold=0.3)
        got = dict(df.select("id", column).collect())
        for i, text, labels in rows:
            if text is None or labels in (["a", "a"], ["ok", None], ["", "x"]):
                assert got[i] is None, (i, labels)
            elif not labels:
                assert got[i] == {"labels": [], "scores": {}, "top": None}[output], (i, labels)
            else:
                want = expected(classifier, [text], output, labels=labels, threshold=0.3)[0]
                assert_same(got[i], want, output, f"row {i}")


def test_prompt_and_threshold_columns(spark, model, classifier, debian_texts):
    """Each row's own prompt and threshold (the reference's per-text options): a null cell takes the job's,
    a bad cell fails only its row, and every other row equals the core run on the same cells."""
    from gliclass_pipelines import ConfigError
    from gliclass_pipelines.core.config import ClassifyConfig
    from gliclass_pipelines.spark.udf import classify_dataframe

    prompts = ["Which software topic is this?", None, "Classify the package:", "Is it a game?"]
    thresholds = [0.0, None, 1.0, 0.3, 2.0]
    rows = [(i, debian_texts[i], prompts[i % 4], thresholds[i % 5]) for i in range(20)]
    df = spark.createDataFrame(rows, "id long, text string, prompt string, cut double").repartition(3)
    out = classify_dataframe(
        df, "text", model=model, labels=LABELS, prompt_col="prompt", threshold_col="cut", threshold=0.2
    )
    got = dict(out.select("id", "gliclass").collect())
    config = ClassifyConfig(model=model, labels=LABELS, threshold=0.2)
    ids, texts, row_prompts, cuts = zip(*rows)
    want, run = config.classify(texts, row_prompts=row_prompts, row_thresholds=cuts, classifier=classifier)
    assert [o.code for o in run.outcomes].count("invalid_option") == 4
    for i in ids:
        assert (got[i] is None) == (thresholds[i % 5] == 2.0), i
        if got[i] is not None:
            assert_same(got[i], want[i], "labels", f"row {i}")
    shared, _ = config.classify(texts, classifier=classifier)
    assert plain(want[0], "labels") != plain(shared[0], "labels")  # its own prompt changed it
    with pytest.raises(ConfigError, match="threshold_col 'prompt' must be"):
        classify_dataframe(df, "text", model=model, labels=LABELS, threshold_col="prompt")


def test_classify_dataframe(spark, model, classifier, debian_texts):
    from gliclass_pipelines.spark.udf import classify_dataframe

    df = text_frame(spark, list(enumerate(debian_texts[:20])))
    out = classify_dataframe(df, "text", model=model, labels=LABELS, output="top", output_col="best")
    assert out.columns == ["id", "text", "best"]
    want = expected(classifier, debian_texts[:20], "top")
    for row in out.collect():
        assert_same(row.best, want[row.id], "top")


def test_a_map_column_is_each_rows_hierarchy(spark, model, classifier, debian_texts):
    """A map<string,array<string>> cell (or an array of maps) is that row's hierarchy, as gliclass reads a
    dict per text; Spark hands it over with arrays inside, flattened like lists. A Spark map keeps no key
    order, so groups whose order matters go in an array of one-group maps."""
    from gliclass_pipelines.spark.udf import classify_dataframe

    groups = [{"software": ["perl", "python"]}, {"topic": ["games", "networking", "web"]}]
    rows = [(i, debian_texts[i], groups[i % 2], groups[i % 2 :]) for i in range(6)]
    df = spark.createDataFrame(
        rows, "id long, text string, tree map<string,array<string>>, trees array<map<string,array<string>>>"
    )
    got, got_nested = (
        dict(
            classify_dataframe(df, "text", model=model, labels_col=column, threshold=0.0)
            .select("id", "gliclass")
            .collect()
        )
        for column in ("tree", "trees")
    )
    for i, text, tree, trees in rows:
        want = expected(classifier, [text], "labels", labels=tree, threshold=0.0)[0]
        assert len(want) == (2 if i % 2 == 0 else 3)
        assert_same(got[i], want, "labels", f"row {i}")
        merged = {name: labels for group in trees for name, labels in group.items()}
        assert_same(
            got_nested[i], expected(classifier, [text], "labels", labels=merged, threshold=0.0)[0], "labels"
        )


def test_run_stats_accumulator_counts_each_row_once(spark, model, debian_texts):
    from gliclass_pipelines.core.config import ClassifyConfig
    from gliclass_pipelines.spark.udf import classify_dataframe, stats_accumulator

    cells = [["perl", "games"], ["a", "a"], None, LABELS]  # ["a", "a"]: a failed row
    rows = [(i, debian_texts[i], cells[i % 4]) for i in range(40)] + [(40, None, ["x"]), (41, " ", None)]
    df = spark.createDataFrame(rows, "id long, text string, labels array<string>").repartition(3)
    stats = stats_accumulator(spark)
    config = ClassifyConfig.from_settings(model, per_row_labels=True)
    out = classify_dataframe(df, "text", config, labels_col="labels", stats=stats)
    out.write.format("noop").mode("overwrite").save()
    got = stats.value
    assert (got.rows, got.null_inputs, got.failed, got.ok) == (42, 2, 10, 30)
    assert got.reasons == {"null_text": 1, "blank_text": 1, "invalid_labels": 10}


@pytest.mark.parametrize("output", ["labels", "top", "scores"])
def test_sql_function_equals_the_column(spark, model, debian_texts, output):
    from gliclass_pipelines.spark.udf import gliclass_udf, register_sql

    texts = debian_texts[:30] + [None, " "]
    cells = [["perl", "games"], None, [], LABELS]
    rows = [(i, t, cells[i % 4]) for i, t in enumerate(texts)]
    df = spark.createDataFrame(rows, "id long, text string, labels array<string>").repartition(2)
    df.createOrReplaceTempView("docs")
    register_sql(spark, f"classify_{output}", model=model, labels=LABELS, output=output)
    register_sql(spark, f"classify_own_{output}", model=model, per_row_labels=True, output=output)
    sql = spark.sql(
        f"SELECT id, classify_{output}(text) AS shared, classify_own_{output}(text, labels) AS own FROM docs"
    )
    column = df.select(
        "id",
        gliclass_udf("text", model=model, labels=LABELS, output=output).alias("shared"),
        gliclass_udf("text", model=model, labels_col="labels", output=output).alias("own"),
    )
    assert sql.schema == column.schema
    got, want = dict_rows(sql), dict_rows(column)
    assert sorted(got) == list(range(len(texts)))
    for i in got:
        assert_same(got[i][0], want[i][0], output, f"shared {i}")
        assert_same(got[i][1], want[i][1], output, f"own {i}")


def dict_rows(df) -> dict:
    return {row.id: (row.shared, row.own) for row in df.collect()}


def test_sql_function_name_is_checked(spark, model):
    from gliclass_pipelines import ConfigError
    from gliclass_pipelines.spark.udf import register_sql

    with pytest.raises(ConfigError, match="SQL function name"):
        register_sql(spark, "drop table x; --", model=model, labels=LABELS)


def test_each_row_is_classified_once(spark, model, debian_texts):
    """The RunStats accumulator counts every row each UDF evaluation classifies: a plan that ran the
    model twice per row would count 2N."""
    from pyspark.sql import functions as F

    from gliclass_pipelines.spark.udf import gliclass_udf, stats_accumulator

    n = 40
    df = text_frame(spark, [(i, debian_texts[i] if i % 10 else None) for i in range(n)], partitions=2)
    queries = {
        "filter on the result": lambda c: df.select("id", c.alias("r")).where(F.size("r") > 0),
        "filter on a field": lambda c: df.select("id", c.alias("r")).where(F.col("r.score") > 0.1),
        "explode": lambda c: df.select("id", F.explode(c).alias("x")).select("id", "x.label", "x.score"),
        "several fields": lambda c: df.select("id", c.alias("r")).select("id", "r.label", "r.score"),
        "withColumn then filter": lambda c: df.withColumn("r", c).where(F.col("r").isNotNull()),
    }
    for what, query in queries.items():
        output = "top" if what in ("filter on a field", "several fields") else "labels"
        stats = stats_accumulator(spark)
        column = gliclass_udf("text", model=model, labels=LABELS, output=output, stats=stats)
        query(column).write.format("noop").mode("overwrite").save()
        assert stats.value.rows == n, (what, stats.value.rows)


def test_ten_thousand_rows_in_16_partitions(spark, model, classifier, debian_texts):
    from gliclass_pipelines.spark.udf import gliclass_udf

    # every text is distinct, so a row that got another row's result shows up as a mismatch
    texts = [f"package {i}: {debian_texts[i % len(debian_texts)][:40]}" for i in range(10_000)]
    df = text_frame(spark, list(enumerate(texts)), partitions=16)
    assert df.rdd.getNumPartitions() == 16
    results = df.select("id", gliclass_udf("text", model=model, labels=LABELS, output="top").alias("r"))
    want = spark.createDataFrame(
        [(i, r["label"], r["score"]) for i, r in enumerate(expected(classifier, texts, "top"))],
        "id long, label string, score double",
    )
    joined = results.join(want, "id", "full_outer").collect()
    assert len(joined) == 10_000
    assert len({row.id for row in joined}) == 10_000
    mismatched = [
        row.id
        for row in joined
        if row.r is None or row.r.label != row.label or abs(row.r.score - row.score) > SCORE_TOLERANCE
    ]
    assert mismatched == []


def test_each_python_worker_loads_the_model_once(spark, checkpoint_factory, debian_texts):
    from conftest import spark_python_workers
    from spark_probe import probe_column

    fresh = str(checkpoint_factory(seed=11))  # a model no other test loaded in these workers
    before = spark_python_workers()  # the session's pool: earlier jobs ran two Python UDF steps per task
    df = text_frame(spark, [(i, debian_texts[i % 50]) for i in range(320)], partitions=16)
    debug = df.select(probe_column("text", model=fresh, labels=LABELS).alias("d"))
    seen = [row.d for _ in range(2) for row in debug.collect()]
    assert len(seen) == 640
    counts: dict[int, set[int]] = {}
    for d in seen:
        counts.setdefault(d.pid, set()).add(d.load_count)
        assert d.device == default_device() and d.gpu is None and d.threads == 1
    assert len({d.partition for d in seen}) == 16
    assert len(set(counts) - before) <= 2, (counts, before)  # reused: at most one new process per core
    assert all(len(values) == 1 and min(values) >= 1 for values in counts.values()), counts


def test_structured_streaming(spark, model, classifier, debian_texts, tmp_path):
    from gliclass_pipelines.spark.udf import gliclass_udf

    source = tmp_path / "in"
    source.mkdir()
    texts = debian_texts[:90]
    for part in range(3):
        with open(source / f"part-{part}.jsonl", "w") as handle:
            for i in range(part * 30, part * 30 + 30):
                handle.write(json.dumps({"id": i, "text": texts[i]}) + "\n")
    stream = spark.readStream.schema("id long, text string").option("maxFilesPerTrigger", 1).json(str(source))
    classified = stream.select("id", gliclass_udf("text", model=model, labels=LABELS).alias("r"))
    query = (
        classified.writeStream.format("memory")
        .queryName("gliclass_stream")
        .option("checkpointLocation", str(tmp_path / "checkpoint"))
        .trigger(availableNow=True)
        .start()
    )
    try:
        assert query.awaitTermination(180)
        assert query.exception() is None
    finally:
        query.stop()
    assert sum(p["numInputRows"] for p in query.recentProgress) == 90
    got = {row.id: row.r for row in spark.table("gliclass_stream").collect()}
    assert sorted(got) == list(range(90))
    for i, record in enumerate(expected(classifier, texts)):
        assert_same(got[i], record, "labels", f"row {i}")


# ------------------------------------------------------------------------------------------------------
# Fresh JVMs: spark-submit, local-cluster with fake GPUs, Spark Connect


def run_script(args: list[str], env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return done


@pytest.mark.slow
def test_classify_job_through_spark_submit(model, classifier, debian_rows, tmp_path):
    import pyarrow.parquet as pq

    rows = [{"id": r["id"], "text": r["text"]} for r in debian_rows[:60]] + [{"id": "no-text", "text": None}]
    source = tmp_path / "input.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    taxonomy = tmp_path / "taxonomy.yaml"
    taxonomy.write_text("labels:\n" + "".join(f"  - {label}\n" for label in LABELS))
    output = tmp_path / "out"
    submit = Path(sys.executable).parent / "spark-submit"
    done = run_script(
        [str(submit), "--master", "local[2]", "--conf", "spark.ui.enabled=false",
         str(ROOT / "spark" / "classify_job.py"), "--input", str(source), "--input-format", "json",
         "--text-col", "text", "--id-col", "id", "--taxonomy", str(taxonomy), "--model", model,
         "--output", str(output)],
        spark_env(),
    )  # fmt: skip
    assert "wrote 61 rows" in done.stdout
    table = pq.read_table(output).to_pylist()
    got = {r["id"]: r["gliclass"] for r in table}
    assert len(table) == len(got) == 61
    want = expected(classifier, [r["text"] for r in rows])
    for row, record in zip(rows, want):
        assert_same(got[row["id"]], record, "labels", row["id"])


def test_classify_job_fails_fast_on_a_bad_taxonomy(model, tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("classify_job", ROOT / "spark" / "classify_job.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    taxonomy = tmp_path / "labels.txt"
    taxonomy.write_text("games\nGames\n")
    args = ["--input", "x", "--taxonomy", str(taxonomy), "--model", model, "--output", str(tmp_path / "o")]
    assert job.main(args) == 2
    assert "duplicate" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


FRESH_JVM_TESTS = {
    "connect": "test_spark_connect_smoke",
    "cluster": "test_local_cluster_tasks_resolve_their_assigned_gpu",
}


@pytest.fixture(scope="module")
def fresh_jvm(request, model, tmp_path_factory) -> dict[str, Any]:
    """One subprocess (one interpreter and JVM launch) for the selected checks that need a session of
    their own: Spark Connect first, before anything there imports torch, then local-cluster."""
    selected = {item.name for item in request.session.items}
    modes = [mode for mode, name in FRESH_JVM_TESTS.items() if name in selected]
    work = tmp_path_factory.mktemp("fresh-jvm")
    claims, fake_bin = work / "claims", work / "bin"
    claims.mkdir()
    fake_bin.mkdir()
    # each worker's discovery run claims the next free index, so the two workers own different GPUs
    (fake_bin / "nvidia-smi").write_text(
        '#!/bin/sh\nfor i in 0 1 2 3; do mkdir "$FAKE_GPU_CLAIMS/$i" 2>/dev/null && echo $i && exit 0; done\n'
    )
    (fake_bin / "nvidia-smi").chmod(0o755)
    env = spark_env(FAKE_GPU_CLAIMS=str(claims), PATH=f"{fake_bin}:{os.environ['PATH']}")
    run_script([sys.executable, __file__, ",".join(modes), model, str(work)], env, timeout=600)
    reports = {mode: json.loads((work / f"{mode}.json").read_text()) for mode in modes}
    return {**reports, "claimed": sorted(p.name for p in claims.iterdir())}


@pytest.mark.slow
def test_local_cluster_tasks_resolve_their_assigned_gpu(fresh_jvm):
    rows, claimed = fresh_jvm["cluster"], fresh_jvm["claimed"]
    assert claimed == ["0", "1"]
    assert len(rows) == 64
    by_pid: dict[int, set[str]] = {}
    for row in rows:
        assert row["gpu"] in claimed
        assert row["requested_device"] == f"cuda:{row['gpu']}"
        assert row["device"] == default_device(row["gpu"])  # without CUDA, a warning and the CPU
        by_pid.setdefault(row["pid"], set()).add(row["gpu"])
    assert all(len(gpus) == 1 for gpus in by_pid.values()), by_pid
    assert set().union(*by_pid.values()) == {"0", "1"}, by_pid


@pytest.mark.slow
def test_spark_connect_smoke(fresh_jvm, classifier, debian_texts):
    report = fresh_jvm["connect"]
    assert report["torch_on_client"] is False
    texts = debian_texts[:30] + [None]
    assert len(report["rows"]) == len(texts)
    for (i, record), want in zip(sorted(report["rows"]), expected(classifier, texts)):
        assert_same(record, want, "labels", f"row {i}")


# ------------------------------------------------------------------------------------------------------
# Subprocess entry points


def _cluster_main(model: str, out: str) -> None:
    from pyspark.sql import SparkSession
    from spark_probe import probe_column

    script = str(ROOT / "spark" / "get_gpus_resources.sh")
    spark = (
        SparkSession.builder.master("local-cluster[2,1,1024]")
        .config("spark.ui.enabled", "false")
        .config("spark.worker.resource.gpu.amount", "1")
        .config("spark.worker.resource.gpu.discoveryScript", script)
        .config("spark.executor.resource.gpu.amount", "1")
        .config("spark.task.resource.gpu.amount", "1")
        .config("spark.scheduler.minRegisteredResourcesRatio", "1.0")
        .config("spark.scheduler.maxRegisteredResourcesWaitingTime", "120s")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "16")
        .getOrCreate()
    )
    try:
        df = spark.createDataFrame([(i, f"text number {i}") for i in range(64)], "id long, text string")
        column = probe_column("text", model=model, labels=LABELS)
        rows = df.repartition(8).select(column.alias("d")).collect()
        Path(out).write_text(json.dumps([row.d.asDict() for row in rows]))
    finally:
        spark.stop()


def _connect_main(model: str, out: str) -> None:
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    from gliclass_pipelines.spark.udf import gliclass_udf

    data = ROOT / "tests" / "data" / "debian_packages.jsonl"
    with open(data, encoding="utf-8") as handle:
        debian = [json.loads(line) for _, line in zip(range(30), handle)]
    texts = [r["text"] for r in debian] + [None]
    spark = (
        SparkSession.builder.remote("local[2]")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "16")
        .getOrCreate()
    )
    try:
        assert type(spark).__module__.startswith("pyspark.sql.connect"), type(spark)
        df = spark.createDataFrame(list(enumerate(texts)), "id long, text string").coalesce(1)
        column = gliclass_udf(F.col("text"), model=model, labels=LABELS)  # a Connect Column
        rows = df.select("id", column.alias("r")).collect()
        records = [(row.id, None if row.r is None else [x.asDict() for x in row.r]) for row in rows]
        Path(out).write_text(json.dumps({"rows": records, "torch_on_client": "torch" in sys.modules}))
    finally:
        spark.stop()


if __name__ == "__main__":
    modes_arg, model_arg, work_arg = sys.argv[1:4]
    entries = {"connect": _connect_main, "cluster": _cluster_main}
    for mode in modes_arg.split(","):  # in FRESH_JVM_TESTS order
        entries[mode](model_arg, str(Path(work_arg) / f"{mode}.json"))
