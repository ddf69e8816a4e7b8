"""Rows, labels and comparisons shared by the pyspark.ml, MLflow and Ray Data tests."""

from __future__ import annotations

from typing import Any

import pytest

LABELS = ["perl", "libraries", "python", "games", "networking", "documentation"]
TEXTS = [
    "Perl module to parse and write YAML documents",
    None,
    "A fast-paced arcade game with lasers and asteroids",
    "   ",
    "Python bindings for the networking library libcurl",
    "Documentation for the GNU C library, in HTML and info formats",
    "A tool that synchronises files over SSH",
    "Perl module to parse and write YAML documents",
    "Chess engine with a graphical board and network play",
    "Library for reading and writing compressed archives " * 12,
]
ROW_LABELS = [
    ["perl", "python"],
    ["games"],
    ["games", "documentation"],
    None,
    [],
    ["documentation"],
    ["networking", "libraries", "games"],
    ["python"],
    ["games", "networking"],
    ["libraries"],
]
TOLERANCE = 1e-5  # the engines return float32; the in-process Classifier float64


def expected(
    model: str, texts: list[Any], labels: Any = LABELS, output: str = "labels", **settings: Any
) -> list:
    """What the in-process engine gives for these rows, shaped like the adapters' output."""
    from gliclass_pipelines.core.config import ClassifyConfig

    per_row = isinstance(labels, list) and isinstance(labels[0], list | type(None))
    config = ClassifyConfig(
        model=model, labels=None if per_row else labels, per_row_labels=per_row, output=output, **settings
    )
    records, _ = config.classify(texts, labels if per_row else None)
    return records


def plain(record: Any, output: str) -> Any:
    """A Spark Row, an Arrow/pandas value or an in-process record as plain tuples and dicts."""
    if record is None:
        return None
    if output == "scores":
        return dict(record)
    if output == "top":
        return (record["label"], record["score"])
    return [(x["label"], x["score"]) for x in record]


def assert_same(got: list[Any], want: list[Any], output: str) -> None:
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        g, w = plain(g, output), plain(w, output)
        if g is None or w is None:
            assert g == w, f"row {i}"
        elif output == "scores":
            assert g.keys() == w.keys(), f"row {i}"
            assert [g[k] for k in w] == pytest.approx([w[k] for k in w], abs=TOLERANCE), f"row {i}"
        elif output == "top":
            assert g[0] == w[0] and g[1] == pytest.approx(w[1], abs=TOLERANCE), f"row {i}"
        else:
            assert [x[0] for x in g] == [x[0] for x in w], f"row {i}"
            assert [x[1] for x in g] == pytest.approx([x[1] for x in w], abs=TOLERANCE), f"row {i}"
