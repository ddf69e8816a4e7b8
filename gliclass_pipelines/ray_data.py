"""Classify texts in a Ray Dataset: :class:`GLiClassPredictor` for ``Dataset.map_batches`` and
:func:`classify_dataset`.

    from gliclass_pipelines.ray_data import classify_dataset

    ds = classify_dataset(ray.data.read_parquet("in/"), "text", labels=["sports", "politics"],
                          model="knowledgator/gliclass-edge-v3.0", concurrency=2, num_gpus=1)

The driver only builds and checks a :class:`~gliclass_pipelines.core.config.ClassifyConfig`. Each actor of
the pool loads the model once, in ``__init__``; with ``num_gpus`` Ray gives the actor its GPU(s) through
``CUDA_VISIBLE_DEVICES`` and the engine uses the first (``cuda:0`` inside the actor) unless ``device``
names one. Each batch comes back as an Arrow table: the input columns, then ``output_col`` typed as
Spark's column (:func:`gliclass_pipelines.core.results.arrow_type`), one result per row in the batch's order,
null for a null or blank text. ``labels_col``, ``prompt_col`` and ``threshold_col`` give each row its own
labels, task prompt and threshold (a null cell takes the job's; an unusable prompt or threshold fails that
row alone, as ``invalid_option``). Like Spark, Ray Data does not keep the order of blocks unless
``DataContext.get_current().execution_options.preserve_order = True``; a result never leaves its row.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import pyarrow as pa

from gliclass_pipelines._common.redaction import redact
from gliclass_pipelines.core.config import ClassifyConfig
from gliclass_pipelines.core.outcomes import RunStats, log_failed
from gliclass_pipelines.core.results import STRUCT_LABELS, has_map, has_struct, labels_from_arrow, to_arrow
from gliclass_pipelines.errors import ConfigError
from gliclass_pipelines.io.readers import is_number_type, is_text_type

__all__ = ["BATCH_FORMATS", "GLiClassPredictor", "classify_dataset"]

logger = logging.getLogger(__name__)

BATCH_FORMATS = ("pyarrow", "pandas")


class GLiClassPredictor:
    """A callable class for ``map_batches``: ``fn_constructor_kwargs={"config": ..., "text_col": ...}``."""

    def __init__(
        self,
        config: ClassifyConfig,
        text_col: str,
        output_col: str = "gliclass",
        labels_col: str | None = None,
        prompt_col: str | None = None,
        threshold_col: str | None = None,
    ) -> None:
        _check_columns(config, text_col, output_col, labels_col, prompt_col, threshold_col)
        self.config = config
        self.text_col = text_col
        self.output_col = output_col
        self.labels_col = labels_col
        self.prompt_col, self.threshold_col = prompt_col, threshold_col
        self.engine_device = _actor_device()
        self.classifier = config.classifier(self.engine_device)
        self.stats = RunStats()
        logger.info("pid %d: %s on %s", os.getpid(), redact(self.classifier.source), self.classifier.device)

    def __call__(self, batch: Any) -> pa.Table:
        table = batch if isinstance(batch, pa.Table) else pa.Table.from_pandas(batch, preserve_index=False)
        texts = table.column(self.text_col).to_pylist()
        row_labels = None if self.labels_col is None else labels_from_arrow(table.column(self.labels_col))
        records, out = self.config.classify(
            texts,
            row_labels,
            classifier=self.classifier,
            row_prompts=_cells(table, self.prompt_col),
            row_thresholds=_cells(table, self.threshold_col),
        )
        log_failed(out.outcomes, offset=self.stats.rows)
        self.stats.add(out.stats)
        if self.output_col in table.column_names:
            table = table.drop_columns([self.output_col])
        return table.append_column(self.output_col, to_arrow(records, self.config.output))


def _cells(table: pa.Table, column: str | None) -> list[Any] | None:
    return None if column is None else table.column(column).to_pylist()


def classify_dataset(
    ds: Any,
    text_col: str,
    *,
    model: str | os.PathLike[str],
    labels: Any = None,
    labels_col: str | None = None,
    prompt_col: str | None = None,
    threshold_col: str | None = None,
    output_col: str = "gliclass",
    batch_format: str = "pyarrow",
    batch_size: int | None = 1024,
    concurrency: int | tuple[int, int] = 1,
    num_gpus: float | None = None,
    num_cpus: float | None = None,
    **settings: Any,
) -> Any:
    """`ds` with a column `output_col` of results; settings as for ClassifyConfig.from_settings.

    ``concurrency`` is the actor pool's size (or a (min, max) range), ``num_gpus``/``num_cpus`` each
    actor's resources (torch threads default to the actor's CPUs, so actors do not oversubscribe;
    ``num_cpus`` defaults to 1, or less where the pool would leave Ray's read tasks no CPU),
    ``batch_size`` the rows one call sorts and cuts into forward passes. ``prompt_col`` (strings) and
    ``threshold_col`` (numbers in [0, 1]) give each row its own prompt and threshold; a null cell takes the
    job's ``prompt`` and ``threshold``.
    Raises ConfigError here, on the driver, for a bad model string, taxonomy, setting or column.
    """
    if batch_format not in BATCH_FORMATS:
        raise ConfigError(f"batch_format must be one of {', '.join(BATCH_FORMATS)}, got {batch_format!r}")
    if labels_col is not None and labels is not None:
        raise ConfigError("give either labels (one taxonomy for every row) or labels_col (per row), not both")
    compute = _pool(concurrency)
    num_cpus = _actor_cpus(ds, num_cpus, compute.max_size)
    # torch threads: the actor's CPUs, as Spark uses the task's
    settings.setdefault("num_threads", max(1, int(num_cpus)))
    config = ClassifyConfig.from_settings(model, labels, per_row_labels=labels_col is not None, **settings)
    columns = dict(
        text_col=text_col, labels_col=labels_col, prompt_col=prompt_col, threshold_col=threshold_col
    )
    _check_columns(config, text_col, output_col, labels_col, prompt_col, threshold_col)
    names = ds.columns(fetch_if_missing=False)
    for what, name in columns.items():
        if names is not None and name is not None and name not in names:
            raise ConfigError(f"{what} {name!r} is not a column of the Dataset; it has {', '.join(names)}")
    if labels_col is not None:
        _check_labels_type(ds, labels_col, batch_format)
    _check_option_types(ds, prompt_col, threshold_col)
    resources = {k: v for k, v in (("num_gpus", num_gpus), ("num_cpus", num_cpus)) if v is not None}
    return ds.map_batches(
        GLiClassPredictor,
        fn_constructor_kwargs={
            "config": config,
            "output_col": output_col,
            **columns,
        },
        batch_format=batch_format,
        batch_size=batch_size,
        compute=compute,
        zero_copy_batch=True,
        **resources,
    )


def _check_labels_type(ds: Any, labels_col: str, batch_format: str) -> None:
    """Refuse, before any actor starts, a labels column whose type (where the Dataset knows it) cannot be
    read as each row's own labels: structs, and maps in pandas batches (lists of (key, value) pairs there,
    which pyarrow cannot turn back into the batch's table)."""
    schema = ds.schema(fetch_if_missing=False)
    kind = None if schema is None else dict(zip(schema.names, schema.types)).get(labels_col)
    if not isinstance(kind, pa.DataType):
        return
    if has_struct(kind):
        raise ConfigError(
            f"labels_col {labels_col!r} {STRUCT_LABELS}; give each row's hierarchy in a "
            "map<string,array<string>> column"
        )
    if batch_format == "pandas" and has_map(kind):
        raise ConfigError(
            f"labels_col {labels_col!r} holds maps ({kind}), which batch_format='pandas' cannot carry; "
            "use batch_format='pyarrow'"
        )


def _check_option_types(ds: Any, prompt_col: str | None, threshold_col: str | None) -> None:
    """Refuse, where the Dataset knows its types, a prompt column that is not strings or a threshold column
    that is not numbers: every row would fail. A bad cell in a good column fails only its row."""
    schema = ds.schema(fetch_if_missing=False)
    if schema is None:
        return
    types = dict(zip(schema.names, schema.types))
    wanted = (
        ("prompt_col", prompt_col, "strings", is_text_type),
        ("threshold_col", threshold_col, "numbers", is_number_type),
    )
    for what, name, kind, accepts in wanted:
        found = types.get(name) if name is not None else None
        if isinstance(found, pa.DataType) and not accepts(found):
            raise ConfigError(f"{what} {name!r} must hold {kind}, but it is {found}")


def _actor_cpus(ds: Any, num_cpus: Any, actors: int) -> float:
    """Each actor's CPUs: `num_cpus`, or by default 1 where the pool leaves a CPU for Ray's read and map
    tasks, else an equal share of the cluster's CPUs less one. Refuses a pool of `actors` that leaves no
    CPU for the tasks that feed it: Ray would wait for one forever (an in-memory Dataset needs none)."""
    if num_cpus is not None and (
        not isinstance(num_cpus, int | float) or isinstance(num_cpus, bool) or not num_cpus >= 0
    ):
        raise ConfigError(f"num_cpus must be a number >= 0, got {num_cpus!r}")
    cluster = _cluster_cpus()
    if num_cpus is None:
        return 1.0 if cluster is None else min(1.0, int(max(cluster - 1, 0) / actors * 100) / 100)
    if cluster is not None and _needs_tasks(ds) and cluster - actors * num_cpus < 1:
        raise ConfigError(
            f"{actors} actor(s) x num_cpus={num_cpus} take {actors * num_cpus:g} of the cluster's "
            f"{cluster:g} CPUs and leave none for Ray's read tasks, which would wait forever; use "
            f"num_cpus <= {max(cluster - 1, 0) / actors:g}, fewer actors, or leave num_cpus unset"
        )
    return float(num_cpus)


def _cluster_cpus() -> float | None:
    import ray

    return ray.cluster_resources().get("CPU") if ray.is_initialized() else None


def _needs_tasks(ds: Any) -> bool:
    """Whether producing `ds`'s blocks runs Ray tasks (reads, maps), not only in-memory inputs."""
    try:
        from ray.data._internal.logical.operators.from_operators import AbstractFrom
        from ray.data._internal.logical.operators.input_data_operator import InputData

        ops = [ds._logical_plan.dag]
    except (ImportError, AttributeError):
        return True
    while ops:
        op = ops.pop()
        if not isinstance(op, AbstractFrom | InputData):
            return True
        ops.extend(op.input_dependencies)
    return False


def _pool(concurrency: Any) -> Any:
    """An ActorPoolStrategy: a fixed size n, or autoscaling between (min, max) actors."""
    from ray.data import ActorPoolStrategy

    sizes = concurrency if isinstance(concurrency, tuple) else (concurrency, concurrency)
    valid = all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in sizes)
    if len(sizes) != 2 or not valid or sizes[0] > sizes[-1]:
        raise ConfigError(f"concurrency must be a positive int or a (min, max) pair, got {concurrency!r}")
    # One block per actor at a time: otherwise the first actor to finish loading its model takes every
    # queued block, and the others sit idle.
    if sizes[0] == sizes[1]:
        return ActorPoolStrategy(size=sizes[0], max_tasks_in_flight_per_actor=1)
    return ActorPoolStrategy(min_size=sizes[0], max_size=sizes[1], max_tasks_in_flight_per_actor=1)


def _check_columns(
    config: ClassifyConfig,
    text_col: Any,
    output_col: Any,
    labels_col: Any,
    prompt_col: Any = None,
    threshold_col: Any = None,
) -> None:
    for what, name in (("text_col", text_col), ("output_col", output_col)):
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{what} must be a column name, got {name!r}")
    if config.per_row_labels != (labels_col is not None):
        raise ConfigError(
            "a per-row labels config needs labels_col, and a shared-labels config must not get one"
        )
    optional = (("labels_col", labels_col), ("prompt_col", prompt_col), ("threshold_col", threshold_col))
    for what, name in optional:
        if name is not None and (not isinstance(name, str) or not name):
            raise ConfigError(f"{what} must be a column name, got {name!r}")


def _actor_device() -> str | None:
    """cuda:0 when Ray assigned this actor a GPU that CUDA can see (Ray sets CUDA_VISIBLE_DEVICES)."""
    import ray

    if not ray.is_initialized() or not ray.get_gpu_ids():
        return None
    import torch

    if torch.cuda.is_available():
        return "cuda:0"
    logger.warning(
        "Ray assigned GPU(s) %s, but CUDA is not available here; using the default device", ray.get_gpu_ids()
    )
    return None
