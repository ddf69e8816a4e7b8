"""The RunInference model handler for GLiClass (re-exported by :mod:`gliclass_pipelines.beam.transforms`)."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from typing import Any, NamedTuple

from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from gliclass_pipelines._common.checks import check_positive_int
from gliclass_pipelines._common.redaction import redact
from gliclass_pipelines.beam.batching import (
    ElementError,
    TokenWeight,
    _check_field,
    batching_kwargs,
    extract,
    option_cells,
)
from gliclass_pipelines.beam.metrics import (
    _metrics,
    count_stats,
)
from gliclass_pipelines.core.config import ClassifyConfig
from gliclass_pipelines.core.encoding import estimate_label_tokens, text_token_cap
from gliclass_pipelines.core.outcomes import RowOutcome, RunStats, log_failed
from gliclass_pipelines.errors import ConfigError

logger = logging.getLogger(__name__)

BEAM_ARGS = (
    "text_field",
    "labels_field",
    "prompt_field",
    "threshold_field",
    "min_batch_tokens",
    "max_batch_tokens",
    "min_batch_size",
    "max_batch_size",
    "max_batch_duration_secs",
    "bucket_boundaries",
    "large_model",
    "model_copies",
    "env_vars",
)


class Failed(NamedTuple):
    """The inference of an element that failed, in ClassifyText's isolating mode (never seen by users)."""

    reason: str


# ----------------------------------------------------------------------------------------------------------
# Classifying one batch


class _Batch(NamedTuple):
    records: list[Any]
    outcomes: list[RowOutcome]
    stats: RunStats


class Rows(NamedTuple):
    """The columns of a batch's usable elements, kept aligned: texts, and each one's labels, prompt and
    threshold cells (None: the job's shared value)."""

    texts: list[Any]
    labels: list[Any]
    prompts: list[Any]
    thresholds: list[Any]

    def part(self, start: int, stop: int) -> Rows:
        return Rows(*(column[start:stop] for column in self))


def _given(cells: list[Any]) -> list[Any] | None:
    return None if all(cell is None for cell in cells) else cells


def classify_batch(config: ClassifyConfig, rows: Rows, classifier: Any) -> _Batch:
    """Classify rows whose labels, prompts and thresholds may be None (the engine then uses the job's)."""
    own = rows.labels if config.labels is None else _given(rows.labels)
    records, out = config.classify(
        rows.texts,
        own,
        classifier=classifier,
        row_prompts=_given(rows.prompts),
        row_thresholds=_given(rows.thresholds),
    )
    return _Batch(records, list(out.outcomes), out.stats)


def _merge(n: int, *parts: tuple[list[int], _Batch]) -> _Batch:
    merged = _Batch([None] * n, [RowOutcome.ok()] * n, RunStats())
    for rows, part in parts:
        for j, i in enumerate(rows):
            merged.records[i], merged.outcomes[i] = part.records[j], part.outcomes[j]
        merged.stats.add(part.stats)
    return merged


def _failed_alone(reason: str, code: str) -> _Batch:
    outcome = RowOutcome.failed(reason, code)
    stats = RunStats()
    stats.count(outcome)
    return _Batch([None], [outcome], stats)


def _inference(record: Any, outcome: RowOutcome) -> Any:
    return Failed(outcome.reason) if outcome.is_failed else record


# ----------------------------------------------------------------------------------------------------------
# RunInference


class GLiClassModelHandler(ModelHandler[Any, PredictionResult, Any]):
    """A RunInference model handler for GLiClass zero-shot classification.

    Args:
        model: a Hub id (``org/name[@revision]``), a local checkpoint directory or a remote URI.
        labels: a list, a hierarchy or a Taxonomy; None when every element carries its own labels.
        threshold, multi_label, output, device, dtype, long_text, batch_tokens, max_length, num_threads:
            as in :class:`~gliclass_pipelines.ClassifyConfig`. ``device="auto"`` is resolved on the
            worker when the model loads, never at pipeline construction.
        text_field, labels_field: the fields of a mapping or beam.Row element; a missing or None labels
            field means the shared ``labels``.
        prompt_field, threshold_field: fields giving each element its own task prompt (a str) and
            threshold (a number in [0, 1]); a missing or None value means the job's ``prompt`` and
            ``threshold``, and an unusable one fails that element alone (code ``invalid_option``).
        min_batch_tokens, max_batch_tokens: ``beam.BatchElements`` weighs each element by its estimated
            tokens (``element_size_fn``; text plus labels) and keeps each batch within these bounds. The
            engine then sorts a batch by length and cuts it into model batches of ``batch_tokens``, so
            big Beam batches mean little padding. By default both are 65536 (a fixed size; Beam's
            adaptive sizing only starts when min_batch_tokens is set lower).
        min_batch_size, max_batch_size: batch by element count instead (these turn token weights off).
        max_batch_duration_secs: buffer elements across bundles (Beam's stateful batching, for streaming).
            Beam then counts elements (min/max_batch_size) and, where the installed Beam supports it,
            keeps elements of similar length together (``bucket_boundaries``, in estimated tokens).
        large_model, model_copies: share the model across the SDK processes of a machine (Beam's
            multi_process_shared) instead of one model per process: one model per machine, or
            ``model_copies`` handles. With ``device="auto"`` on a machine with several GPUs, the copies go
            round robin over the GPUs, so ``model_copies=<number of GPUs>`` gives one model per GPU.
        env_vars: environment variables set on the worker before the model loads.
        options (or by name): more Classifier.run options (``prompt``, ``examples``, ``chunk_overlap``...).

    The settings build a ClassifyConfig (``ClassifyConfig.from_settings``); an unknown keyword is a
    ConfigError. ``GLiClassModelHandler.from_config(config, **beam_args)`` takes an existing one.
    """

    def __init__(self, model: str | os.PathLike[str], labels: Any = None, **kwargs: Any) -> None:
        beam_args = {name: kwargs.pop(name) for name in list(kwargs) if name in BEAM_ARGS}
        config = ClassifyConfig.from_settings(model, labels, per_row_labels=labels is None, **kwargs)
        self._setup(config, **beam_args)

    @classmethod
    def from_config(cls, config: ClassifyConfig, **beam_args: Any) -> GLiClassModelHandler:
        """A handler for a ClassifyConfig; beam_args are the Beam-side arguments (fields, batching,
        sharing: :data:`BEAM_ARGS`)."""
        unknown = sorted(set(beam_args) - set(BEAM_ARGS))
        if unknown:
            raise ConfigError(f"unknown Beam argument(s) {', '.join(unknown)}; known: {', '.join(BEAM_ARGS)}")
        handler = cls.__new__(cls)
        handler._setup(config, **beam_args)
        return handler

    def _setup(
        self,
        config: ClassifyConfig,
        *,
        text_field: str = "text",
        labels_field: str | None = "labels",
        prompt_field: str | None = None,
        threshold_field: str | None = None,
        min_batch_tokens: int | None = None,
        max_batch_tokens: int | None = None,
        min_batch_size: int | None = None,
        max_batch_size: int | None = None,
        max_batch_duration_secs: float | None = None,
        bucket_boundaries: list[int] | None = None,
        large_model: bool = False,
        model_copies: int | None = None,
        env_vars: dict[str, str] | None = None,
    ) -> None:
        _check_field(text_field, "text_field", optional=False)
        _check_field(labels_field, "labels_field", optional=True)
        _check_field(prompt_field, "prompt_field", optional=True)
        _check_field(threshold_field, "threshold_field", optional=True)
        if config.labels is None and labels_field is None:
            raise ConfigError("give labels, or a labels_field that holds each element's labels")
        self.config = config
        self.model_id = redact(config.model)  # what PredictionResult.model_id, logs and metrics show
        self.text_field, self.labels_field = text_field, labels_field
        self.prompt_field, self.threshold_field = prompt_field, threshold_field
        self._isolate = False
        batching = batching_kwargs(
            self.token_weight(),
            min_batch_tokens=min_batch_tokens,
            max_batch_tokens=max_batch_tokens,
            min_batch_size=min_batch_size,
            max_batch_size=max_batch_size,
            max_batch_duration_secs=max_batch_duration_secs,
            bucket_boundaries=bucket_boundaries,
        )
        check_positive_int(model_copies, "model_copies")
        super().__init__(
            large_model=large_model, model_copies=model_copies, env_vars=env_vars or {}, **batching
        )

    def fingerprint(self) -> str:
        """The job's provenance fingerprint (ClassifyConfig.fingerprint), for a pipeline to write."""
        return self.config.fingerprint()

    def token_weight(self) -> TokenWeight:
        shared_labels = self.config.labels.labels if self.config.labels is not None else ()
        cap = text_token_cap(self.config.max_length, self.config.long_text)
        label_tokens = estimate_label_tokens(shared_labels)
        fields = (self.text_field, self.labels_field)
        return TokenWeight(*fields, label_tokens, cap, prompt_field=self.prompt_field)

    # -- the ModelHandler contract ---------------------------------------------------------------------

    def load_model(self) -> Any:
        return self._worker_config().classifier()

    def run_inference(
        self, batch: Sequence[Any], model: Any, inference_args: dict[str, Any] | None = None
    ) -> list[PredictionResult]:
        """One PredictionResult per element, in order. An element that cannot be classified (malformed,
        refused labels, or, in the isolating copy, an inference that raises) gets ``Failed(reason)``
        as its inference, alone: the rest of the batch is classified."""
        batch = list(batch)
        if not batch:
            return []
        done = _merge(len(batch), *self._parts(batch, model))
        count_stats(done.stats)
        _metrics()["batch_size"].update(len(batch))
        _metrics()["batch_tokens"].update(done.stats.real_tokens)
        log_failed(done.outcomes)
        inferences = [_inference(r, o) for r, o in zip(done.records, done.outcomes)]
        return [PredictionResult(e, x, self.model_id) for e, x in zip(batch, inferences)]

    def _parts(self, batch: list[Any], model: Any) -> list[tuple[list[int], _Batch]]:
        parts, good, rows = [], [], Rows([], [], [], [])
        for i, element in enumerate(batch):
            try:
                text, own = extract(element, self.text_field, self.labels_field)
            except ElementError as exc:
                parts.append(([i], _failed_alone(f"ElementError: {exc}", "malformed_element")))
                continue
            prompt, threshold = option_cells(element, self.prompt_field, self.threshold_field)
            good.append(i)
            for column, cell in zip(rows, (text, own, prompt, threshold)):
                column.append(cell)
        if good:
            parts.append((good, self._classify(rows, model)))
        return parts

    def _classify(self, rows: Rows, model: Any) -> _Batch:
        if not self._isolate:
            return classify_batch(self.config, rows, model)
        try:
            return classify_batch(self.config, rows, model)
        except Exception as exc:
            n = len(rows.texts)
            if n == 1:
                return _failed_alone(f"{type(exc).__name__}: {exc}", "inference_error")
            logger.warning("a batch of %d failed (%s); retrying it in halves", n, exc)
            half = n // 2
            first = self._classify(rows.part(0, half), model)
            second = self._classify(rows.part(half, n), model)
            return _merge(n, (list(range(half)), first), (list(range(half, n)), second))

    def update_model_path(self, model_path: str | None = None) -> None:
        """Serve `model_path` from now on (RunInference's model_metadata_pcoll / WatchFilePattern).

        Beam calls this on the worker, then :meth:`load_model`; results then carry the new model's id.
        """
        if not model_path or model_path == self.config.model:
            return
        self.config = self.config.with_(model=model_path)
        self.model_id = redact(model_path)
        logger.info("GLiClass model updated to %s", self.model_id)

    def get_num_bytes(self, batch: Sequence[Any]) -> int:
        total = 0
        for element in batch:
            try:
                text, _ = extract(element, self.text_field, self.labels_field)
            except ElementError:
                text = None
            total += len(text.encode("utf-8", "replace")) if isinstance(text, str) else 0
        return total

    def validate_inference_args(self, inference_args: dict[str, Any] | None) -> None:
        if inference_args:
            raise ConfigError(
                f"GLiClassModelHandler takes no inference_args (got {sorted(inference_args)}); "
                "set threshold, labels and the other options on the handler"
            )

    def __repr__(self) -> str:
        labels = len(self.config.labels) if self.config.labels is not None else "per-element"
        config = self.config
        model = redact(config.model)
        return f"GLiClassModelHandler(model={model!r}, labels={labels}, device={config.device!r})"

    # -- helpers ----------------------------------------------------------------------------------------

    def isolating(self) -> GLiClassModelHandler:
        """A copy that also isolates inference errors: a batch that raises is retried in halves, down to
        the element that raises, whose inference becomes Failed(reason)."""
        copy = object.__new__(type(self))
        copy.__dict__.update(self.__dict__)
        copy._isolate = True
        return copy

    def _worker_config(self) -> ClassifyConfig:
        if self.config.device != "auto" or not self.share_model_across_processes():
            return self.config
        import torch

        gpus = torch.cuda.device_count()
        if gpus <= 1:
            return self.config
        return self.config.with_(device=f"cuda:{_next_slot(self.config.model) % gpus}")


def _next_slot(model: str) -> int:
    """A machine-wide counter (file + lock), so shared model copies spread over the GPUs."""
    import hashlib

    import fasteners

    name = "gliclass-gpu-slot-" + hashlib.sha256(model.encode()).hexdigest()[:12]
    path = os.path.join(tempfile.gettempdir(), name)
    with fasteners.InterProcessLock(path + ".lock"), open(path, "a+") as handle:
        handle.seek(0)
        slot = int(handle.read() or 0)
        handle.seek(0)
        handle.truncate()
        handle.write(str(slot + 1))
    return slot
