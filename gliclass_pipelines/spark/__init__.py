"""Public names of gliclass_pipelines.spark; they live in gliclass_pipelines.spark.udf."""

from gliclass_pipelines.spark.udf import (  # noqa: F401
    GLiClassUDF,
    classify_dataframe,
    gliclass_udf,
    gliclass_udf_from_config,
    register_sql,
    stats_accumulator,
)

__all__ = [
    "GLiClassUDF",
    "classify_dataframe",
    "gliclass_udf",
    "gliclass_udf_from_config",
    "register_sql",
    "stats_accumulator",
]
