"""Output records and their Arrow and Spark schemas, shared by every adapter.

- ``labels``: ``array<struct<label:string,score:float>>``, sorted by descending score;
- ``top``: ``struct<label:string,score:float>``, the best label whatever the threshold;
- ``scores``: ``map<string,float>`` of every label.

A null input gives a null record. Per-row labels that are null or empty give an empty record
(``[]``, ``{}``, or null for ``top``).
"""

from __future__ import annotations

from typing import Any

from gliclass_pipelines.errors import ConfigError

OUTPUTS = ("labels", "top", "scores")
SPARK_DDL = {
    "labels": "array<struct<label:string,score:float>>",
    "top": "struct<label:string,score:float>",
    "scores": "map<string,float>",
}

Result = list[dict[str, Any]] | None


def check_output(output: str) -> str:
    if output not in OUTPUTS:
        raise ConfigError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
    return output


def needs_all_labels(output: str) -> bool:
    """Whether shaping needs every label's score rather than the thresholded ones."""
    return output != "labels"


def shape(results: list[Result], output: str) -> list[Any]:
    """Turn the classifier's per-row results into records of one output kind."""
    if output == "labels":
        return results
    if output == "top":
        return [r[0] if r else None for r in results]
    return [None if r is None else {x["label"]: x["score"] for x in r} for r in results]


def arrow_type(output: str) -> Any:
    import pyarrow as pa

    item = pa.struct([pa.field("label", pa.string()), pa.field("score", pa.float32())])
    return {"labels": pa.list_(item), "top": item, "scores": pa.map_(pa.string(), pa.float32())}[
        check_output(output)
    ]


def to_arrow(records: list[Any], output: str) -> Any:
    """An Arrow array of shaped records (maps as lists of pairs, as Arrow expects)."""
    import pyarrow as pa

    if output == "scores":
        records = [None if r is None else list(r.items()) for r in records]
    return pa.array(records, type=arrow_type(output))


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
