"""output="hierarchical": every label's score by its group, equal to the reference's
``return_hierarchical=True`` (deeper groups by their path), through the core, Arrow, the CLI and Spark."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_parity import SHAPE_VARIANTS, build_pair, variant_params

from gliclass_pipelines import ClassifyConfig, ConfigError
from gliclass_pipelines.core.results import SPARK_DDL, arrow_type, to_arrow
from gliclass_pipelines.testing.checkpoints import variant_id

TOL = 1e-5
HIERARCHY = {"sentiment": ["positive", "negative"], "topic": ["games", "science"]}
DEEP = {"software": ["library", "game"], "topic": {"science": ["physics", "biology"], "arts": "music"}}
ROWS = [{"os": ["linux", "bsd"]}, None, {"a": {"b": ["c"]}, "d": "e"}, ["flat"], {}]


@pytest.fixture(scope="module", params=SHAPE_VARIANTS, ids=variant_id)
def pair(request, checkpoint_factory):
    ours, reference, variant = build_pair(request.param, checkpoint_factory)
    return ours, reference, str(checkpoint_factory(**variant_params(variant))), variant


@pytest.fixture(scope="module")
def texts(debian_texts):
    return [t for t in debian_texts if 20 < len(t.split()) < 80][:4] + ["A tiny arcade game."]


def by_path(tree: dict, prefix: str | None = None) -> dict:
    """The reference's nested dict as group path -> label -> score."""
    out = {}
    for key, value in tree.items():
        path = key if prefix is None else f"{prefix}.{key}"
        if all(isinstance(v, float) for v in value.values()):
            out[path] = value
        else:
            out.update(by_path(value, path))
    return out


def assert_same(mine: list, theirs: list) -> None:
    assert len(mine) == len(theirs)
    for got, want in zip(mine, theirs):
        assert got.keys() == want.keys()
        for group in want:
            assert got[group].keys() == want[group].keys(), group
            for label, score in want[group].items():
                assert got[group][label] == pytest.approx(score, abs=TOL), (group, label)


@pytest.mark.parametrize("kind", ["multi-label", "single-label"])
@pytest.mark.parametrize("labels", [HIERARCHY, DEEP], ids=["two-levels", "deeper"])
def test_shared_labels_equal_the_reference(pair, texts, kind, labels):
    ours, reference, model, _ = pair
    theirs = reference(kind)(texts, labels, threshold=0.5, batch_size=1, return_hierarchical=True)
    config = ClassifyConfig(model, labels, output="hierarchical", multi_label=kind == "multi-label")
    mine, out = config.classify(texts, classifier=ours)
    assert all(o.is_ok for o in out.outcomes)
    assert_same(mine, [by_path(t) for t in theirs])
    if labels is HIERARCHY:
        assert_same(mine, theirs)
    scores = [s for row in mine for group in row.values() for s in group.values()]
    assert max(scores) - min(scores) > 0.01, "scores do not differ: the test could not fail"


def test_per_row_hierarchies(pair, texts):
    """Each row's groups as the reference gives them for that text alone; a null row takes the shared
    labels, an empty one gives {}, and a row of flat labels fails alone."""
    ours, reference, model, _ = pair
    config = ClassifyConfig(model, HIERARCHY, per_row_labels=True, output="hierarchical")
    mine, out = config.classify(texts, ROWS, classifier=ours)
    pipeline = reference()
    for i, labels in enumerate(ROWS):
        if labels is None or (isinstance(labels, dict) and labels):
            labels = HIERARCHY if labels is None else labels
            theirs = pipeline([texts[i]], labels, threshold=0.5, batch_size=1, return_hierarchical=True)
            assert_same([mine[i]], [by_path(theirs[0])])
    assert (
        mine[3] is None
        and out.outcomes[3].code == "invalid_labels"
        and "in no group" in out.outcomes[3].reason
    )
    assert mine[4] == {}
    assert [o.is_ok for o in out.outcomes] == [True, True, True, False, True]


def test_labels_without_groups_are_refused_when_configured():
    with pytest.raises(ConfigError, match="'a' is in no group"):
        ClassifyConfig("x/y", ["a", "b"], output="hierarchical")
    with pytest.raises(ConfigError, match="both have the path 'a.b'"):
        ClassifyConfig("x/y", {"a.b": ["x"], "a": {"b": ["y"]}}, output="hierarchical")
    assert ClassifyConfig("x/y", ["a", "b"], output="scores").output == "scores"


def test_arrow_type_and_records():
    records = [{"topic": {"games": 0.25, "science": 0.5}, "a.b": {"c": 1.0}}, None, {}]
    array = to_arrow(records, "hierarchical")
    assert (
        array.type == pa.map_(pa.string(), pa.map_(pa.string(), pa.float32())) == arrow_type("hierarchical")
    )
    assert SPARK_DDL["hierarchical"] == "map<string,map<string,float>>"
    assert [None if v is None else {g: dict(s) for g, s in v} for v in array.to_pylist()] == records


def test_cli_local_runner_writes_the_nested_map(debian_rows, tiny_checkpoint, tmp_path):
    from test_cli import classify_args

    from gliclass_pipelines import cli

    rows = [{"id": str(i), "text": r["text"]} for i, r in enumerate(debian_rows[:6])] + [
        {"id": "6", "text": None}
    ]
    source, taxonomy = tmp_path / "in.parquet", tmp_path / "taxonomy.json"
    pq.write_table(pa.Table.from_pylist(rows), source)
    taxonomy.write_text(json.dumps({"labels": DEEP}), encoding="utf-8")
    args = classify_args(source, tmp_path / "out", tiny_checkpoint, "--output-kind", "hierarchical")
    args[args.index("--labels") + 1] = str(taxonomy)
    assert cli.main(args) == 0
    table = pq.read_table(tmp_path / "out")
    assert table.schema.field("gliclass").type == arrow_type("hierarchical")
    config = ClassifyConfig(str(tiny_checkpoint), DEEP, output="hierarchical", device="cpu")
    want, _ = config.classify([r["text"] for r in rows])
    got = [None if v is None else {g: dict(s) for g, s in v} for v in table.column("gliclass").to_pylist()]
    assert got[-1] is None
    assert_same(got[:-1], want[:-1])


def test_beam_rows_hold_the_nested_map_as_pairs():
    from gliclass_pipelines.cli.run_beam import _BeamRow

    schema = pa.schema([("id", pa.string())])
    row = _BeamRow(schema, "gliclass", "hierarchical", "id")({"id": "1"}, {"topic": {"games": 0.5}})
    table = pa.Table.from_pylist(
        [row], schema=schema.append(pa.field("gliclass", arrow_type("hierarchical")))
    )
    assert table.column("gliclass").to_pylist() == [[("topic", [("games", 0.5)])]]


@pytest.mark.spark
def test_spark_udf_type_and_values_equal_the_core(spark, tiny_checkpoint, debian_texts):
    from gliclass_pipelines.spark.udf import gliclass_udf

    model, texts = str(tiny_checkpoint), debian_texts[:8] + [None]
    trees = [HIERARCHY, {"os": ["linux"]}, None]
    rows = [(i, t, trees[i % 3]) for i, t in enumerate(texts)]
    df = spark.createDataFrame(rows, "id long, text string, tree map<string,array<string>>").repartition(2)
    shared = gliclass_udf("text", model=model, labels=DEEP, output="hierarchical").alias("shared")
    own = gliclass_udf("text", model=model, labels_col="tree", output="hierarchical")
    result = df.select("id", shared, own.alias("own"))
    assert result.schema["shared"].dataType.simpleString() == SPARK_DDL["hierarchical"]
    assert result.schema["own"].dataType.simpleString() == SPARK_DDL["hierarchical"]
    got = {r.id: r for r in result.collect()}
    config = ClassifyConfig(model, DEEP, output="hierarchical", device="cpu")
    want, _ = config.classify(texts)
    own_config = config.with_(labels=None, per_row_labels=True)
    want_own, _ = own_config.classify(texts, [t for _, _, t in rows])
    assert got[8].shared is None and got[8].own is None
    assert_same([got[i].shared for i in range(8)], want[:8])
    assert_same([got[i].own for i in range(8)], want_own[:8])
    assert [got[i].own == {} for i in range(8)] == [i % 3 == 2 for i in range(8)]  # a null tree: no labels
