"""Apache Beam adapter: a RunInference model handler, a plain DoFn, and ClassifyText with dead letters.

Everything here is engine glue. The job is a :class:`~gliclass_pipelines.ClassifyConfig`, built and
validated when the pipeline is constructed; the model is loaded on the worker (``load_model``), where the
device is resolved, and classification is ``config.classify(texts, row_labels, classifier=model,
row_prompts=..., row_thresholds=...)``.

Elements are ``str``, or a mapping / ``beam.Row`` with a text field and optional per-element labels,
prompt and threshold fields (``labels_field``, ``prompt_field``, ``threshold_field``). Each output is a
``PredictionResult(example, inference, model_id)`` whose inference is the core's record (by default a
list of ``{"label", "score"}``; None for a null text; ``Failed(reason)`` for an element that could not be
classified, alone, so ``with_exception_handling()`` gets only real failures).

Metrics: Beam's own RunInference metrics stay in Beam's namespace; this module's counters, in the
``gliclass`` namespace, are named after :class:`~gliclass_pipelines.core.outcomes.RunStats` fields (plus
``dead_letters`` and ``reason_<code>``); :func:`run_stats` reads them back from a PipelineResult.
Model updates: ``RunInference(handler, model_metadata_pcoll=...)`` swaps models (update_model_path).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam.ml.inference.base import PredictionResult, RunInference
from apache_beam.utils import shared

from gliclass_pipelines._common.redaction import redact
from gliclass_pipelines.beam.batching import (  # noqa: F401 (public names of this module)
    _SUPPORTS_LENGTH_BUCKETS,
    DEFAULT_BATCH_TOKENS,
    ElementError,
    TokenWeight,
    _check_field,
    batching_kwargs,
    extract,
)
from gliclass_pipelines.beam.handler import (  # noqa: F401 (public names of this module)
    BEAM_ARGS,
    Failed,
    GLiClassModelHandler,
    _failed_alone,
    classify_batch,
)
from gliclass_pipelines.beam.metrics import (  # noqa: F401
    DEAD_LETTERS,
    NAMESPACE,
    _metrics,
    count_dead_letters,
    count_stats,
    dead_letter_count,
    run_stats,
)
from gliclass_pipelines.core.config import ClassifyConfig

logger = logging.getLogger(__name__)

__all__ = [
    "BEAM_ARGS",
    "DEAD_LETTERS",
    "Classified",
    "ClassifyText",
    "ElementError",
    "Failed",
    "GLiClassDoFn",
    "GLiClassModelHandler",
    "dead_letter",
    "dead_letter_count",
    "run_stats",
]


class Classified(NamedTuple):
    """ClassifyText's outputs: PredictionResults, and dead letters ``{"element", "reason", "stage"}``."""

    results: beam.PCollection
    dead_letters: beam.PCollection


# ----------------------------------------------------------------------------------------------------------
# A plain DoFn


class _Loaded:
    """A weak-referenceable holder for apache_beam.utils.shared.Shared."""

    def __init__(self, classifier: Any) -> None:
        self.classifier = classifier


class GLiClassDoFn(beam.DoFn):
    """Classify elements (or lists of elements, e.g. from BatchElements) into PredictionResults.

    ``setup()`` takes the model from the core registry through ``apache_beam.utils.shared.Shared``, so
    every instance of this DoFn in a worker process shares one model. Takes the handler's arguments.
    """

    def __init__(self, model: str | os.PathLike[str], labels: Any = None, **kwargs: Any) -> None:
        self._use(GLiClassModelHandler(model, labels, **kwargs))

    @classmethod
    def from_config(cls, config: ClassifyConfig, **beam_args: Any) -> GLiClassDoFn:
        dofn = cls.__new__(cls)
        dofn._use(GLiClassModelHandler.from_config(config, **beam_args))
        return dofn

    def _use(self, handler: GLiClassModelHandler) -> None:
        beam.DoFn.__init__(self)
        self.handler = handler
        self._shared = shared.Shared()
        self._holder: _Loaded | None = None

    def setup(self) -> None:
        config = self.handler.config
        tag = f"gliclass:{config.model}:{config.device}:{config.dtype}:{config.max_length}:{config.precision}"
        self._holder = self._shared.acquire(lambda: _Loaded(self.handler.load_model()), tag=tag)

    def process(self, element: Any) -> Iterable[PredictionResult]:
        batch = element if isinstance(element, list) else [element]
        yield from self.handler.run_inference(batch, self._holder.classifier)


# ----------------------------------------------------------------------------------------------------------
# ClassifyText: results plus dead letters


def dead_letter(element: Any, reason: str, stage: str) -> dict[str, Any]:
    return {"element": element, "reason": reason, "stage": stage}


class _Validate(beam.DoFn):
    def __init__(self, text_field: str, labels_field: str | None) -> None:
        self.text_field, self.labels_field = text_field, labels_field

    def process(self, element: Any) -> Iterable[Any]:
        try:
            extract(element, self.text_field, self.labels_field)
        except ElementError as exc:
            count_stats(_failed_alone(str(exc), "malformed_element").stats)
            count_dead_letters()
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, dead_letter(element, str(exc), "validate"))
            return
        yield element


class _SplitFailures(beam.DoFn):
    def process(self, result: PredictionResult) -> Iterable[Any]:
        if isinstance(result.inference, Failed):
            count_dead_letters()
            reason = result.inference.reason
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, dead_letter(result.example, reason, "inference"))
        else:
            yield result


def _unbatch(failure: tuple[Any, Any]) -> Iterable[dict[str, Any]]:
    batch, (exc_type, exc_repr, _) = failure
    name = getattr(exc_type, "__name__", str(exc_type))
    reason = redact(f"{name} (whole batch): {exc_repr}")
    for element in batch:
        count_stats(_failed_alone(reason, "batch_error").stats)
        count_dead_letters()
        yield dead_letter(element, reason, "inference")


class ClassifyText(beam.PTransform):
    """Classify texts (str, mappings or beam.Rows) into Classified(results, dead_letters).

    Results are PredictionResults. Malformed elements, elements whose labels the model refuses, and
    elements whose inference raises each land alone in ``dead_letters`` as ``{"element", "reason",
    "stage"}``; the other elements of the same batch still succeed. Takes the handler's arguments.
    """

    def __init__(self, model: str | os.PathLike[str], labels: Any = None, **kwargs: Any) -> None:
        super().__init__()
        self.handler = GLiClassModelHandler(model, labels, **kwargs).isolating()

    @classmethod
    def from_config(cls, config: ClassifyConfig, **beam_args: Any) -> ClassifyText:
        """ClassifyText for a ClassifyConfig; beam_args as in GLiClassModelHandler.from_config."""
        transform = cls.__new__(cls)
        beam.PTransform.__init__(transform)
        transform.handler = GLiClassModelHandler.from_config(config, **beam_args).isolating()
        return transform

    def expand(self, pcoll: beam.PCollection) -> Classified:
        handler = self.handler
        checked = pcoll | "Validate" >> beam.ParDo(
            _Validate(handler.text_field, handler.labels_field)
        ).with_outputs(DEAD_LETTERS, main="ok")
        results, dlq = checked.ok | "RunInference" >> RunInference(handler).with_exception_handling()
        split = results | "SplitFailures" >> beam.ParDo(_SplitFailures()).with_outputs(
            DEAD_LETTERS, main="ok"
        )
        batch_failures = dlq.failed_inferences | "Unbatch" >> beam.FlatMap(_unbatch)
        dead = (checked[DEAD_LETTERS], split[DEAD_LETTERS], batch_failures) | "DeadLetters" >> beam.Flatten()
        return Classified(split.ok, dead)
