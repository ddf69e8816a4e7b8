"""Output records and their Arrow and Spark schemas, shared by every adapter.

- ``labels``: ``array<struct<label:string,score:float>>``, sorted by descending score;
- ``top``: ``struct<label:string,score:float>``, the best label whatever the threshold;
- ``scores``: ``map<string,float>`` of every label;
- ``hierarchical``: ``map<string,map<string,float>>``, every label's score by its group's path
  (:mod:`gliclass_pipelines.core.hierarchy`), as the reference's ``return_hierarchical=True``.

A null input gives a null record. Per-row labels that are null or empty give an empty record
(``[]``, ``{}``, or null for ``top``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gliclass_pipelines.errors import ConfigError

OUTPUTS = ("labels", "top", "scores", "hierarchical")
SPARK_DDL = {
    "labels": "array<struct<label:string,score:float>>",
    "top": "struct<label:string,score:float>",
    "scores": "map<string,float>",
    "hierarchical": "map<string,map<string,float>>",
}

Result = list[dict[str, Any]] | None


def check_output(output: str) -> str:
    if output not in OUTPUTS:
        raise ConfigError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
    return output


def needs_all_labels(output: str) -> bool:
    """Whether shaping needs every label's score rather than the thresholded ones."""
    return output != "labels"


def shape(results: list[Result], output: str, groups: Sequence[Any] | None = None) -> list[Any]:
    """Turn the classifier's per-row results into records of one output kind; "hierarchical" needs each
    row's groups (:func:`gliclass_pipelines.core.hierarchy.row_groups`)."""
    if output == "labels":
        return results
    if output == "top":
        return [r[0] if r else None for r in results]
    if output == "hierarchical":
        from gliclass_pipelines.core.hierarchy import nest

        if groups is None or len(groups) != len(results):
            raise ValueError("hierarchical records need one row's groups per result")
        return [nest(r, g) for r, g in zip(results, groups)]
    return [None if r is None else {x["label"]: x["score"] for x in r} for r in results]


def arrow_type(output: str) -> Any:
    import pyarrow as pa

    item = pa.struct([pa.field("label", pa.string()), pa.field("score", pa.float32())])
    scores = pa.map_(pa.string(), pa.float32())
    nested = pa.map_(pa.string(), scores)
    return {"labels": pa.list_(item), "top": item, "scores": scores, "hierarchical": nested}[
        check_output(output)
    ]


def to_arrow(records: list[Any], output: str) -> Any:
    """An Arrow array of shaped records (maps as lists of pairs, as Arrow expects)."""
    import pyarrow as pa

    return pa.array([as_pairs(r, output) for r in records], type=arrow_type(output))


def as_pairs(record: Any, output: str) -> Any:
    """A record with its maps as lists of (key, value) pairs, as Arrow takes them."""
    if record is None or output not in ("scores", "hierarchical"):
        return record
    if output == "hierarchical":
        return [(group, list(scores.items())) for group, scores in record.items()]
    return list(record.items())


def labels_from_arrow(column: Any) -> list[Any]:
    """A per-row labels column as Python values, a map (one row's hierarchy) as a dict: to_pylist gives
    a map as a list of (key, value) pairs, which would read as labels."""
    return [_from_arrow(value, column.type) for value in column.to_pylist()]


def has_map(arrow_type: Any) -> bool:
    """Whether an Arrow type is, or holds, a map."""
    import pyarrow as pa

    return _holds(arrow_type, pa.types.is_map)


def has_struct(arrow_type: Any) -> bool:
    """Whether an Arrow type is, or holds, a struct: objects (JSON's, pandas' dicts) read by Arrow, which
    gives every row the fields of all the rows it saw, null where absent (STRUCT_LABELS)."""
    import pyarrow as pa

    return _holds(arrow_type, pa.types.is_struct)


STRUCT_LABELS = (
    "holds objects read as an Arrow struct, which gives each row the fields of the rows Arrow saw (null "
    "where absent), so a row's own hierarchy cannot be read from it exactly"
)


def _holds(arrow_type: Any, test: Any) -> bool:
    import pyarrow as pa

    if test(arrow_type):
        return True
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        return _holds(arrow_type.value_type, test)
    if pa.types.is_map(arrow_type):
        return _holds(arrow_type.key_type, test) or _holds(arrow_type.item_type, test)
    return False


def _from_arrow(value: Any, arrow_type: Any) -> Any:
    import pyarrow as pa

    if value is None or not has_map(arrow_type):
        return value
    if pa.types.is_map(arrow_type):
        return {key: _from_arrow(item, arrow_type.item_type) for key, item in value}
    return [_from_arrow(item, arrow_type.value_type) for item in value]
