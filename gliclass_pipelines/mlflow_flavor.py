"""GLiClass as an MLflow pyfunc model: the checkpoint travels as an artifact, the taxonomy and settings
as the model's ``model_config``.

    from gliclass_pipelines.mlflow_flavor import log_model

    info = log_model("knowledgator/gliclass-edge-v3.0", "topics", labels=["sports", "politics"])
    model = mlflow.pyfunc.load_model(info.model_uri)
    model.predict(pd.DataFrame({"text": ["The match went to extra time", None]}))
    # a Series: [[{'label': 'sports', 'score': 0.97}], None] -- the records gliclass_udf gives

    udf = mlflow.pyfunc.spark_udf(spark, info.model_uri, result_type="string",
                                  env_manager="local", model_config={"result_format": "json"})
    df.withColumn("topics", parse_json(udf("text"), "labels"))

``spark_udf`` cannot return an array of structs or a null map, so for Spark the model answers JSON text
(``result_format="json"``, ``"null"`` for a null input), which :func:`parse_json` turns into exactly the
column ``gliclass_udf`` gives (``from_json`` with :data:`gliclass_pipelines.core.results.SPARK_DDL`, except
that "top" goes through an array: ``from_json`` makes a struct of nulls, not null, from ``"null"``).
"""

from __future__ import annotations

import inspect
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

from gliclass_pipelines._common.redaction import redact
from gliclass_pipelines.core.config import ClassifyConfig
from gliclass_pipelines.core.outcomes import log_failed
from gliclass_pipelines.errors import ConfigError
from gliclass_pipelines.model.sources import ModelSource
from gliclass_pipelines.taxonomy.taxonomy import Taxonomy

__all__ = ["GLiClassPyfunc", "log_model", "model_config", "parse_json", "save_model"]

logger = logging.getLogger(__name__)

CHECKPOINT = "checkpoint"
RESULT_FORMATS = ("records", "json")
SETTINGS = (
    "threshold",
    "multi_label",
    "output",
    "device",
    "dtype",
    "precision",
    "long_text",
    "batch_tokens",
    "max_length",
)
MAX_CHECKPOINT_FILES = 1000


class GLiClassPyfunc(PythonModel):
    """Loads the checkpoint artifact once per process; ``predict`` classifies one text column."""

    def load_context(self, context: Any) -> None:
        self.config, self.text_column, self.result_format = _from_model_config(
            context.artifacts[CHECKPOINT], context.model_config or {}
        )
        self.config.classifier()

    def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201 (MLflow reads hints as a schema)
        """One result per row of `model_input`, in order: a list for ``result_format="records"`` (what the
        scoring server returns as ``predictions``), where a failed row (a number, say) is ``{"error":
        reason}``; JSON text in a Series for ``"json"`` (spark_udf). `model_input`: any shape MLflow's
        scoring server builds (a DataFrame, a dict of columns, an ndarray, a Series or a list of texts)."""
        texts = _texts(model_input, self.text_column)
        records, out = self.config.classify(texts)
        log_failed(out.outcomes)
        if self.result_format == "json":
            import json

            records = [json.dumps(record) for record in records]
            return pd.Series(records, dtype=object, index=getattr(model_input, "index", None))
        return [{"error": o.reason} if o.is_failed else r for r, o in zip(records, out.outcomes)]


def model_config(
    model: str | os.PathLike[str],
    labels: Any,
    *,
    text_column: str = "text",
    result_format: str = "records",
    **settings: Any,
) -> tuple[ClassifyConfig, dict[str, Any]]:
    """The job's ClassifyConfig (validated, no model loaded) and its JSON-ready ``model_config``."""
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(SETTINGS)}")
    if result_format not in RESULT_FORMATS:
        raise ConfigError(f"result_format must be one of {', '.join(RESULT_FORMATS)}, got {result_format!r}")
    if not isinstance(text_column, str) or not text_column:
        raise ConfigError(f"text_column must be a column name, got {text_column!r}")
    config = ClassifyConfig(model=os.fspath(model), labels=labels, **settings)
    return config, {
        "taxonomy": config.labels.to_dict(),
        "settings": {name: getattr(config, name) for name in SETTINGS},
        "text_column": text_column,
        "result_format": result_format,
    }


def parse_json(column: Any, output: str) -> Any:
    """A Spark Column of ``result_format="json"`` text as the column gliclass_udf gives for `output`."""
    from pyspark.sql import functions as F

    from gliclass_pipelines.core.results import SPARK_DDL, check_output

    if check_output(output) == "top":
        wrapped = F.concat(F.lit("["), column, F.lit("]"))
        return F.get(F.from_json(wrapped, f"array<{SPARK_DDL['top']}>"), 0)
    return F.from_json(column, SPARK_DDL[output])


def save_model(
    path: str | os.PathLike[str], model: str | os.PathLike[str], labels: Any, **kwargs: Any
) -> None:
    """Write an MLflow model directory at `path`; keyword arguments as in :func:`log_model`."""
    pyfunc_kwargs = _pyfunc_kwargs(model, labels, kwargs)
    with _staged(model) as checkpoint:
        mlflow.pyfunc.save_model(path, artifacts={CHECKPOINT: str(checkpoint)}, **pyfunc_kwargs)


def log_model(model: str | os.PathLike[str], name: str, labels: Any, **kwargs: Any) -> Any:
    """Log `model` (a checkpoint directory, Hub id or URI; copied) with its taxonomy to the active run.

    `kwargs`: the settings (threshold, multi_label, output, device, dtype, precision, long_text, batch_tokens,
    max_length), ``text_column`` (default "text"), ``result_format`` ("records" or "json"), and
    ``pip_requirements``, ``registered_model_name`` or other arguments of ``mlflow.pyfunc.log_model``.
    Everything is checked before the checkpoint is copied. Returns MLflow's ModelInfo (``.model_uri``).
    """
    pyfunc_kwargs = _pyfunc_kwargs(model, labels, kwargs)
    with _staged(model) as checkpoint:
        return mlflow.pyfunc.log_model(name=name, artifacts={CHECKPOINT: str(checkpoint)}, **pyfunc_kwargs)


def _pyfunc_kwargs(model: Any, labels: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    own = {k: kwargs.pop(k) for k in list(kwargs) if k in (*SETTINGS, "text_column", "result_format")}
    accepted = set(inspect.signature(mlflow.pyfunc.log_model).parameters) - {"python_model", "artifacts"}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ConfigError(
            f"unknown argument(s) {', '.join(unknown)}: neither a setting ({', '.join(SETTINGS)}, "
            "text_column, result_format) nor an argument of mlflow.pyfunc.log_model"
        )
    kwargs.setdefault("pip_requirements", _requirements())
    config = model_config(model, labels, **own)[1]
    kwargs.setdefault("signature", signature(config["text_column"]))
    return {"python_model": GLiClassPyfunc(), "model_config": config, **kwargs}


def _requirements() -> list[str]:
    """Pinned to what runs here, so MLflow does not infer them by importing the model in a subprocess."""
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for package in ("gliclass-pipelines", "gliclass", "torch", "transformers", "mlflow-skinny"):
        try:
            pins.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            pins.append(package)
    return pins


def _from_model_config(checkpoint: str, logged: dict[str, Any]) -> tuple[ClassifyConfig, str, str]:
    config, checked = model_config(
        checkpoint,
        Taxonomy.from_dict(logged["taxonomy"]),
        text_column=logged.get("text_column", "text"),
        result_format=logged.get("result_format", "records"),
        **logged.get("settings", {}),
    )
    return config, checked["text_column"], checked["result_format"]


def _texts(model_input: Any, column: str) -> list[Any]:
    import numpy as np

    if isinstance(model_input, pd.DataFrame | dict):
        names = list(model_input.keys())
        if column in names:
            return list(model_input[column])
        if names == [0]:  # spark_udf names unnamed arguments 0, 1, ...
            return list(model_input[0])
        raise ConfigError(
            f"the input has no {column!r} column (it has {', '.join(map(str, names))}); "
            f"send a {column!r} column or log the model with text_column=..."
        )
    if isinstance(model_input, np.ndarray) and model_input.ndim == 2 and model_input.shape[1] == 1:
        return model_input[:, 0].tolist()
    if isinstance(model_input, np.ndarray) and model_input.ndim == 1 or isinstance(model_input, pd.Series):
        return model_input.tolist()
    if isinstance(model_input, list | tuple):
        return list(model_input)
    raise ConfigError(
        "predict takes a DataFrame, a dict of columns, a Series, a 1-D array or a list of texts, got "
        f"{type(model_input).__name__}{getattr(model_input, 'shape', '')}"
    )


def signature(text_column: str) -> Any:
    """One input column of any type (a number there is a failed row, not a text "3"), one result per row."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema
    from mlflow.types.schema import AnyType

    return ModelSignature(inputs=Schema([ColSpec(AnyType(), text_column)]))


class _staged:
    """A temporary copy of the checkpoint's files (symlinks resolved, none leading outside), removed after."""

    def __init__(self, model: str | os.PathLike[str]) -> None:
        self.source = ModelSource.parse(model)

    def __enter__(self) -> Path:
        directory = self.source.fetch()
        self.tmp = tempfile.mkdtemp(prefix="gliclass-mlflow-")
        target = Path(self.tmp) / CHECKPOINT
        _copy_checkpoint(directory, target, _allowed_root(self.source, directory))
        return target

    def __exit__(self, *exc: Any) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def _allowed_root(source: ModelSource, directory: Path) -> Path:
    """Where the checkpoint's symlinks may point: the Hub cache's repo folder (snapshots -> blobs)."""
    return directory.resolve().parents[1] if source.kind == "hub" else directory.resolve()


def _copy_checkpoint(directory: Path, target: Path, root: Path) -> None:
    files = [p for p in sorted(directory.rglob("*")) if not p.is_dir()]
    if len(files) > MAX_CHECKPOINT_FILES:
        raise ConfigError(f"checkpoint {redact(str(directory))} holds over {MAX_CHECKPOINT_FILES} files")
    for path in files:
        real = path.resolve()
        if not real.is_file() or not real.is_relative_to(root):
            raise ConfigError(f"checkpoint file {path.name!r} is not a regular file inside the checkpoint")
        destination = target / path.relative_to(directory)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(real, destination)
