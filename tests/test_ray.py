"""The Ray Data adapter on a real local Ray instance (2 CPUs, no dashboard): equal to the in-process
engine on the same rows, nulls kept, no row lost, Spark's Arrow schema, both batch formats."""

from __future__ import annotations

import os

import pytest

ray = pytest.importorskip("ray")
pa = pytest.importorskip("pyarrow")
pd = pytest.importorskip("pandas")

pytest.register_assert_rewrite("integrations_support")
from integrations_support import LABELS, ROW_LABELS, TEXTS, assert_same, expected  # noqa: E402

from gliclass_pipelines.core.results import arrow_type  # noqa: E402
from gliclass_pipelines.errors import ConfigError  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}},
    )
    context = ray.data.DataContext.get_current()
    order, context.execution_options.preserve_order = context.execution_options.preserve_order, True
    yield
    context.execution_options.preserve_order = order
    ray.shutdown()


def dataset(rows: int = len(TEXTS), blocks: int = 3):
    frame = pd.DataFrame(
        {"id": range(rows), "text": (TEXTS * rows)[:rows], "row_labels": (ROW_LABELS * rows)[:rows]}
    )
    size = -(-rows // blocks)  # made on the driver: no Ray task competes with the actors for the 2 CPUs
    return ray.data.from_pandas([frame.iloc[i : i + size] for i in range(0, rows, size)])


@pytest.mark.parametrize(
    ("batch_format", "output"), [("pyarrow", "labels"), ("pandas", "scores"), ("pyarrow", "top")]
)
def test_equals_engine_in_order_with_nulls(local_ray, tiny_checkpoint, batch_format, output):
    from gliclass_pipelines.ray_data import classify_dataset

    model = str(tiny_checkpoint)
    taxonomy = {"labels": LABELS, "thresholds": {"games": 0.3}}
    out = classify_dataset(
        dataset(),
        "text",
        labels=taxonomy,
        model=model,
        output=output,
        batch_format=batch_format,
        batch_size=4,
    )
    table = pa.concat_tables(ray.get(out.to_arrow_refs()))
    assert table.column_names == ["id", "text", "row_labels", "gliclass"]
    assert table.schema.field("gliclass").type == arrow_type(output)
    assert table.column("id").to_pylist() == list(range(len(TEXTS)))
    got = table.column("gliclass").to_pylist()
    if output == "scores":
        got = [None if r is None else dict(r) for r in got]
    assert [r is None for r in got] == [t is None or not t.strip() for t in TEXTS]
    assert_same(got, expected(model, TEXTS, taxonomy, output), output)


def test_per_row_labels_and_two_actors(local_ray, tiny_checkpoint):
    from gliclass_pipelines.ray_data import classify_dataset

    model = str(tiny_checkpoint)
    rows = 40
    out = classify_dataset(
        dataset(rows, blocks=4),
        "text",
        labels_col="row_labels",
        model=model,
        concurrency=2,
        num_cpus=1,
        batch_size=8,
    )
    table = pa.concat_tables(ray.get(out.to_arrow_refs()))
    assert table.column("id").to_pylist() == list(range(rows))
    texts, labels = (TEXTS * 4)[:rows], (ROW_LABELS * 4)[:rows]
    assert_same(table.column("gliclass").to_pylist(), expected(model, texts, labels), "labels")


ASK = "Which kind of software package is this?"


def test_a_prompt_and_a_threshold_per_row(local_ray, tiny_checkpoint):
    """prompt_col and threshold_col: a null cell takes the job's, a bad threshold fails only its row (counted
    as invalid_option), and every row, in order, is what ClassifyConfig.classify gives for the same cells."""
    from gliclass_pipelines.core.config import ClassifyConfig
    from gliclass_pipelines.ray_data import GLiClassPredictor, classify_dataset

    model = str(tiny_checkpoint)
    texts = [TEXTS[0], TEXTS[2], TEXTS[4], TEXTS[0], TEXTS[5], TEXTS[6]]
    asks = [ASK, None, ASK, None, None, ASK]
    cuts = [0.0, 1.0, 2.0, None, 0.0, None]
    table = pa.table({"id": range(6), "text": texts, "ask": asks, "cut": pa.array(cuts, pa.float64())})
    job = {"labels": LABELS, "threshold": 0.0, "prompt": "Describe the package:"}
    config = ClassifyConfig.from_settings(model, **job)
    want, _ = config.classify(texts, row_prompts=asks, row_thresholds=cuts)
    cells = {"prompt_col": "ask", "threshold_col": "cut"}
    ds = ray.data.from_arrow([table.slice(0, 3), table.slice(3)])
    out = classify_dataset(ds, "text", model=model, batch_size=2, **cells, **job)
    got = pa.concat_tables(ray.get(out.to_arrow_refs()))
    assert got.column("id").to_pylist() == list(range(6))
    assert_same(got.column("gliclass").to_pylist(), want, "labels")
    assert want[2] is None and want[1] == [] and len(want[0]) == len(LABELS)
    assert [x["score"] for x in want[0]] != pytest.approx([x["score"] for x in want[3]], abs=1e-4)

    with pytest.raises(ConfigError, match="threshold_col 'text' must hold numbers"):
        classify_dataset(ray.data.from_arrow(table), "text", model=model, threshold_col="text", **job)

    predictor = GLiClassPredictor(config, "text", **cells)
    direct = predictor(table.to_pandas()).column("gliclass").to_pylist()
    assert_same(direct, want, "labels")
    assert (predictor.stats.rows, predictor.stats.failed, predictor.stats.reasons) == (
        6,
        1,
        {"invalid_option": 1},
    )


TREES = [{"software": ["perl", "python"]}, {"topic": ["games", "networking", "documentation"]}]


def test_a_map_labels_column_is_each_rows_hierarchy(local_ray, tiny_checkpoint):
    """A map<string,array<string>> cell is the row's hierarchy, as gliclass reads a dict per text (Arrow's
    to_pylist would give its (key, value) pairs, which must not read as labels); batch_format='pandas',
    which cannot carry maps back to Arrow, and a struct column (every row gets every row's fields) are
    refused on the driver."""
    from gliclass_pipelines.core.config import ClassifyConfig
    from gliclass_pipelines.ray_data import classify_dataset

    model, texts = str(tiny_checkpoint), [t for t in TEXTS if t and t.strip()][:4]
    trees = [TREES[i % 2] for i in range(len(texts))]
    kind = pa.map_(pa.string(), pa.list_(pa.string()))
    table = pa.table({"text": texts, "tree": pa.array([list(t.items()) for t in trees], type=kind)})
    out = classify_dataset(ray.data.from_arrow(table), "text", labels_col="tree", model=model, threshold=0.0)
    got = pa.concat_tables(ray.get(out.to_arrow_refs())).column("gliclass").to_pylist()
    want, _ = ClassifyConfig(model, per_row_labels=True, threshold=0.0).classify(texts, trees)
    assert [len(r) for r in want] == [2, 3, 2, 3]
    assert_same(got, want, "labels")
    with pytest.raises(ConfigError, match="batch_format='pyarrow'"):
        classify_dataset(
            ray.data.from_arrow(table), "text", labels_col="tree", model=model, batch_format="pandas"
        )
    objects = pa.table({"text": texts, "tree": pa.array(trees)})  # a struct: every row gets both groups
    assert pa.types.is_struct(objects.schema.field("tree").type)
    with pytest.raises(ConfigError, match="objects read as an Arrow struct"):
        classify_dataset(ray.data.from_arrow(objects), "text", labels_col="tree", model=model)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"labels": LABELS, "labels_col": "row_labels"},
        {"labels": []},
        {"labels": LABELS, "output": "best"},
        {"labels": LABELS, "batch_format": "numpy"},
        {"labels": LABELS, "num_beams": 2},
        {"labels": LABELS, "text_col": "body"},
        {"labels": LABELS, "prompt_col": "ask"},
        {"labels": LABELS, "prompt_col": 3},
        {"labels": LABELS, "threshold_col": ""},
        {"labels": LABELS, "prompt_col": "id"},
        {"labels": LABELS, "concurrency": 0},
        {"labels": LABELS, "concurrency": (2, 1, 3)},
    ],
)
def test_bad_arguments_raise_on_the_driver(local_ray, kwargs):
    from gliclass_pipelines.ray_data import classify_dataset

    kwargs = {"text_col": "text", **kwargs}
    with pytest.raises(ConfigError):
        classify_dataset(dataset(), model="org/model", **kwargs)


def test_int8_equals_the_int8_engine(local_ray, tiny_checkpoint):
    pytest.importorskip("onnxruntime")
    from gliclass_pipelines.ray_data import classify_dataset

    model = str(tiny_checkpoint)
    out = classify_dataset(
        dataset(), "text", labels=LABELS, model=model, output="scores", precision="int8", batch_size=4
    )
    table = pa.concat_tables(ray.get(out.to_arrow_refs()))
    assert table.column("id").to_pylist() == list(range(len(TEXTS)))
    got = [None if r is None else dict(r) for r in table.column("gliclass").to_pylist()]
    want = expected(model, TEXTS, output="scores", precision="int8")
    assert_same(got, want, "scores")
    float32 = expected(model, TEXTS, output="scores")
    assert max(abs(w[k] - f[k]) for w, f in zip(want, float32) if w for k in w) > 1e-3  # really int8


@pytest.mark.parametrize(("concurrency", "want"), [(1, 1.0), (2, 0.5), ((1, 3), 0.33)])
def test_default_actor_cpus_leave_a_cpu_for_reads(local_ray, tmp_path, concurrency, want):
    """On 2 CPUs, 2 actors with Ray's default of 1 CPU each left the file read no CPU and the job hung
    (scripts/deploy_checks.py runs it on a `ray start` cluster); the default share leaves one."""
    from gliclass_pipelines.ray_data import classify_dataset

    path = tmp_path / "in.jsonl"
    path.write_text('{"text": "a"}\n')
    out = classify_dataset(
        ray.data.read_json(str(path)), "text", labels=LABELS, model="org/model", concurrency=concurrency
    )
    assert out._logical_plan.dag.ray_remote_args["num_cpus"] == want


@pytest.mark.parametrize(("concurrency", "num_cpus"), [(2, 1), ((1, 2), 1), (1, 2)])
def test_a_pool_that_leaves_reads_no_cpu_is_refused(local_ray, tmp_path, concurrency, num_cpus):
    from gliclass_pipelines.ray_data import classify_dataset

    path = tmp_path / "in.jsonl"
    path.write_text('{"text": "a"}\n')
    with pytest.raises(ConfigError, match=r"x num_cpus=\d.* of the cluster's 2 CPUs"):
        classify_dataset(
            ray.data.read_json(str(path)),
            "text",
            labels=LABELS,
            model="org/model",
            concurrency=concurrency,
            num_cpus=num_cpus,
        )
    with pytest.raises(ConfigError, match="num_cpus must be a number"):
        classify_dataset(dataset(), "text", labels=LABELS, model="org/model", num_cpus="1")
