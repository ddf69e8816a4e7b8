"""GLiClass as a ``pyspark.ml`` stage: :class:`GLiClassTransformer` works inside a ``Pipeline`` and
persists with ``save``/``load`` (its Params are the whole state; the model is a source string).

    from pyspark.ml import Pipeline
    from gliclass_pipelines.spark.ml import GLiClassTransformer

    stage = GLiClassTransformer(inputCol="text", outputCol="topic", model="knowledgator/gliclass-edge-v3.0",
                                labels=["sports", "politics"], output="top")
    Pipeline(stages=[stage]).fit(df).write().save("models/topics")

``_transform`` builds the same :class:`~gliclass_pipelines.core.config.ClassifyConfig` as
:func:`~gliclass_pipelines.spark.gliclass_udf` and returns its column, so results are identical. Each
Param is checked when it is set, and the whole configuration on the driver before any Spark job starts.
"""

from __future__ import annotations

import json
import os
from typing import Any

from pyspark import keyword_only
from pyspark.ml import Transformer
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasInputCol, HasOutputCol
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable
from pyspark.sql import DataFrame

from gliclass_pipelines._common.checks import DEFAULT_THRESHOLD, check_positive_int, check_threshold
from gliclass_pipelines._common.redaction import shorten
from gliclass_pipelines.core.config import LONG_TEXT_POLICIES
from gliclass_pipelines.core.results import check_output
from gliclass_pipelines.errors import ConfigError
from gliclass_pipelines.model.int8 import PRECISIONS, check_precision
from gliclass_pipelines.model.sources import ModelSource, check_device, check_dtype
from gliclass_pipelines.taxonomy.taxonomy import Taxonomy

__all__ = ["GLiClassTransformer"]


def _taxonomy_json(value: Any) -> str:
    """A taxonomy (JSON text, a list, a mapping or a Taxonomy) as canonical JSON text, validated."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise ConfigError(f"labels must be a list, a mapping or their JSON text: {err}") from err
    return json.dumps(Taxonomy.coerce(value).to_dict(), sort_keys=True)


def _thresholds_json(value: Any) -> str:
    """Per-label (or per-group) thresholds as JSON text of a mapping label -> number in [0, 1]."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise ConfigError(f"thresholds must be a mapping or its JSON text: {err}") from err
    if not isinstance(value, dict):
        raise ConfigError(f"thresholds must map labels to numbers, got {shorten(repr(value))}")
    for label, number in value.items():
        check_threshold(number, f"threshold of {label!r}")
    return json.dumps(value, sort_keys=True)


def _choice(choices: tuple[str, ...], name: str) -> Any:
    def convert(value: Any) -> str:
        if value not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {shorten(repr(value))}")
        return value

    return convert


def _checked(check: Any, name: str) -> Any:
    return lambda value: check(value, name)


def _model(value: Any) -> str:
    value = os.fspath(value) if isinstance(value, os.PathLike) else value
    ModelSource.parse(value)
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"multiLabel must be True or False, got {shorten(repr(value))}")
    return value


class GLiClassTransformer(
    Transformer, HasInputCol, HasOutputCol, DefaultParamsReadable, DefaultParamsWritable
):
    """Adds ``outputCol`` with GLiClass results for the texts in ``inputCol`` (see the module doc)."""

    model = Param(
        Params._dummy(),
        "model",
        "Hub id[@revision], local directory or fsspec URI of a GLiClass checkpoint",
        typeConverter=_model,
    )
    labels = Param(
        Params._dummy(),
        "labels",
        "taxonomy for every row: a list, a mapping, or their JSON text",
        typeConverter=_taxonomy_json,
    )
    labelsCol = Param(
        Params._dummy(),
        "labelsCol",
        "array<string> column of per-row labels (instead of labels)",
        typeConverter=TypeConverters.toString,
    )
    threshold = Param(
        Params._dummy(),
        "threshold",
        "default score threshold in [0, 1]",
        typeConverter=_checked(check_threshold, "threshold"),
    )
    thresholds = Param(
        Params._dummy(),
        "thresholds",
        "per-label or per-group thresholds: a mapping or its JSON text",
        typeConverter=_thresholds_json,
    )
    multiLabel = Param(
        Params._dummy(), "multiLabel", "sigmoid per label (True) or softmax (False)", typeConverter=_bool
    )
    output = Param(
        Params._dummy(),
        "output",
        "labels | top | scores",
        typeConverter=check_output,
    )
    device = Param(Params._dummy(), "device", "auto, cpu, cuda or cuda:N", typeConverter=check_device)
    dtype = Param(Params._dummy(), "dtype", "auto, float32, float16 or bfloat16", typeConverter=check_dtype)
    precision = Param(
        Params._dummy(),
        "precision",
        f"{' | '.join(PRECISIONS)} (int8: the encoder quantized, CPU only)",
        typeConverter=check_precision,
    )
    longText = Param(
        Params._dummy(), "longText", "truncate | chunk", typeConverter=_choice(LONG_TEXT_POLICIES, "longText")
    )
    batchTokens = Param(
        Params._dummy(),
        "batchTokens",
        "padded tokens per forward pass",
        typeConverter=_checked(check_positive_int, "batchTokens"),
    )
    maxLength = Param(
        Params._dummy(),
        "maxLength",
        "tokens per sequence",
        typeConverter=_checked(check_positive_int, "maxLength"),
    )
    numThreads = Param(
        Params._dummy(),
        "numThreads",
        "torch threads per task",
        typeConverter=_checked(check_positive_int, "numThreads"),
    )

    @keyword_only
    def __init__(
        self,
        *,
        inputCol: str = "text",
        outputCol: str = "gliclass",
        model: str | None = None,
        labels: Any = None,
        labelsCol: str | None = None,
        threshold: float = DEFAULT_THRESHOLD,
        thresholds: Any = None,
        multiLabel: bool = True,
        output: str = "labels",
        device: str = "auto",
        dtype: str = "auto",
        precision: str = "float32",
        longText: str = "truncate",
        batchTokens: int | None = None,
        maxLength: int | None = None,
        numThreads: int | None = None,
    ) -> None:
        super().__init__()
        self._setDefault(
            inputCol="text",
            outputCol="gliclass",
            threshold=DEFAULT_THRESHOLD,
            multiLabel=True,
            output="labels",
            device="auto",
            dtype="auto",
            precision="float32",
            longText="truncate",
        )
        self.setParams(**self._input_kwargs)

    @keyword_only
    def setParams(self, **kwargs: Any) -> GLiClassTransformer:
        """Set any of the constructor's Params (None leaves a Param unset)."""
        return self._set(**{name: value for name, value in kwargs.items() if value is not None})

    def getTaxonomy(self) -> Taxonomy | None:
        """The shared taxonomy with ``thresholds`` merged in, or None for per-row labels."""
        if not self.isDefined(self.labels):
            return None
        data = json.loads(self.getOrDefault(self.labels))
        if self.isDefined(self.thresholds):
            data["thresholds"] = {
                **data.get("thresholds", {}),
                **json.loads(self.getOrDefault(self.thresholds)),
            }
        return Taxonomy.from_dict(data)

    def udf_settings(self) -> dict[str, Any]:
        """The keyword arguments of :func:`~gliclass_pipelines.spark.gliclass_udf` these Params stand for."""
        if not self.isDefined(self.model):
            raise ConfigError("GLiClassTransformer needs a model: setParams(model=...)")
        if self.isDefined(self.labels) == self.isDefined(self.labelsCol):
            raise ConfigError(
                "GLiClassTransformer needs exactly one of labels (shared) or labelsCol (per row)"
            )
        settings: dict[str, Any] = {"model": self.getOrDefault(self.model), "labels": self.getTaxonomy()}
        if self.isDefined(self.labelsCol):
            settings["labels_col"] = self.getOrDefault(self.labelsCol)
        if self.isDefined(self.labelsCol) and self.isDefined(self.thresholds):
            raise ConfigError("thresholds apply to the shared labels; with labelsCol set threshold only")
        for param, name in _SETTINGS.items():
            if self.isDefined(self.getParam(param)):
                settings[name] = self.getOrDefault(param)
        return settings

    def _transform(self, dataset: DataFrame) -> DataFrame:
        from gliclass_pipelines.spark.udf import gliclass_udf

        settings = self.udf_settings()
        text_col = self.getInputCol()
        if text_col not in dataset.columns:
            raise ConfigError(
                f"inputCol {text_col!r} is not a column of the DataFrame; it has {', '.join(dataset.columns)}"
            )
        return dataset.withColumn(self.getOutputCol(), gliclass_udf(text_col, **settings))


_SETTINGS = {  # Param name -> gliclass_udf keyword
    "threshold": "threshold",
    "multiLabel": "multi_label",
    "output": "output",
    "device": "device",
    "dtype": "dtype",
    "precision": "precision",
    "longText": "long_text",
    "batchTokens": "batch_tokens",
    "maxLength": "max_length",
    "numThreads": "num_threads",
}
