"""The classifier every adapter calls: plan labels, encode, plan batches, forward, postprocess.

Each stage lives in its own module (labels_plan, encoding, batching, forward, postprocess); this one
loads a model and runs the stages in order. Texts are tokenized once, label sections once per label set;
sequences are sorted by length and cut into batches by a padded-token budget, and pooling is masked, so
a text's scores do not depend on which texts share its batch.
"""

from __future__ import annotations

import logging
import numbers
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from gliclass_pipelines._common.checks import DEFAULT_THRESHOLD, check_positive_int, check_threshold
from gliclass_pipelines.core.batching import cut_batches, deduplicate, default_batch_tokens
from gliclass_pipelines.core.encoding import (
    LONG_TEXT_POLICIES,
    Encoded,
    EncodedSequence,
    TextEncoder,
    check_max_length,
    text_problem,
    tokenizer_failed,
)
from gliclass_pipelines.core.forward import Batch, ModelForward, collate, max_positions
from gliclass_pipelines.core.label_plan import (
    LabelPlan,
    LabelPlanner,
    is_per_row,
    labels_for_rows,
    refuse_per_text,
)
from gliclass_pipelines.core.long_text import chunk_problem, max_chunk_chars
from gliclass_pipelines.core.outcomes import LoadReport, Output, RowOutcome, RunStats
from gliclass_pipelines.core.per_text import TextOptions, per_text_options, with_rac_examples
from gliclass_pipelines.core.postprocess import combine, empty_logits, predictions
from gliclass_pipelines.core.threads import set_threads
from gliclass_pipelines.errors import ConfigError
from gliclass_pipelines.model.int8 import check_precision, precision_device, quantize
from gliclass_pipelines.model.sources import (
    REGISTRY,
    ModelKey,
    ModelSource,
    load_checkpoint,
    resolve_device,
    resolve_dtype,
)
from gliclass_pipelines.model.tokenizer_checks import is_tokenizer_failure

logger = logging.getLogger(__name__)

__all__ = ["Classifier", "check_run_options"]


class Classifier:
    """A loaded GLiClass model that classifies batches of texts against a label taxonomy.

    Build it with :meth:`load`, which returns the process-wide instance for a (source, device, dtype).
    The constructor takes the model object as given (it only calls it), so a converted copy of a model,
    quantized say, can be passed in with the checkpoint's tokenizer.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        source: str,
        device: str,
        dtype: str,
        label_tokenizer: Any = None,
        max_length: int | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.label_tokenizer = label_tokenizer
        self.source = source
        self.device = torch.device(device)
        self.dtype = dtype
        self.config = model.config
        self.max_length = check_max_length(max_length, max_positions(self.config), source)
        self.forward_pass = ModelForward(
            model, device=self.device, label_tokenizer=label_tokenizer, max_length=self.max_length
        )
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        architecture = self.forward_pass.architecture
        self.encoder = TextEncoder(
            tokenizer,
            architecture=architecture,
            prompt_first=bool(self.config.prompt_first),
            max_length=self.max_length,
            label_slots=self.forward_pass.label_slots,
        )
        self.planner = LabelPlanner(self.encoder, bi_encoder=architecture == "bi-encoder")
        self.metrics = RunStats()
        self._lock = threading.Lock()
        self.load_seconds = 0.0
        self.load_report = LoadReport()  # nothing to report: _load gives a loaded model its own
        if self.encoder.joint_tokenization:
            logger.warning("tokenizer of %s is context-sensitive: tokenizing each row whole", source)

    @classmethod
    def load(
        cls,
        model: str | os.PathLike[str],
        *,
        device: str | None = "auto",
        dtype: str | None = "auto",
        engine_device: str | None = None,
        max_length: int | None = None,
        num_threads: int | None = None,
        precision: str = "float32",
    ) -> Classifier:
        """The process-wide classifier for (model, device, dtype, precision); loaded on first use, then
        shared. ``precision="int8"`` quantizes the encoder for CPU (gliclass_pipelines.model.int8)."""
        source = ModelSource.parse(model)
        precision = check_precision(precision, device, dtype)
        resolved_device = resolve_device(precision_device(precision, device), engine_device)
        resolved_dtype = resolve_dtype(dtype, resolved_device)
        if num_threads:  # adapters call this per batch
            set_threads(int(num_threads))
        key = ModelKey(
            source, resolved_device, resolved_dtype, max_length, None if precision == "float32" else precision
        )
        return REGISTRY.get_or_load(
            key, lambda: cls._load(source, resolved_device, resolved_dtype, max_length, precision)
        )

    @classmethod
    def _load(
        cls, source: ModelSource, device: str, dtype: str, max_length: int | None, precision: str = "float32"
    ) -> Classifier:
        started = time.perf_counter()
        directory = source.fetch()
        model, tokenizer, label_tokenizer = load_checkpoint(directory, str(source))
        model.to(device=torch.device(device), dtype=getattr(torch, dtype)).eval()
        if precision == "int8":
            quantize(model)
        clf = cls(
            model,
            tokenizer,
            source=str(source),
            device=device,
            dtype=dtype,
            label_tokenizer=label_tokenizer,
            max_length=max_length,
        )
        clf.load_seconds = time.perf_counter() - started
        clf.load_report = LoadReport(clf.load_seconds)
        logger.info("loaded %s on %s (%s, %s) in %.1fs", source, device, dtype, precision, clf.load_seconds)
        return clf

    # ------------------------------------------------------------------------------------------------
    # Public API

    def classify(
        self,
        texts: Sequence[str | None],
        labels: Any,
        threshold: float = DEFAULT_THRESHOLD,
        multi_label: bool = True,
        return_all: bool = False,
        **options: Any,
    ) -> list[list[dict[str, Any]] | None]:
        """One result per text: None for a null or blank text, else labels sorted by descending score."""
        return self.run(
            texts, labels, threshold=threshold, multi_label=multi_label, return_all=return_all, **options
        ).results

    def run(
        self,
        texts: Sequence[Any],
        labels: Any = None,
        *,
        row_labels: Sequence[Any] | None = None,
        threshold: float | Sequence[float] = DEFAULT_THRESHOLD,
        multi_label: bool = True,
        return_all: bool = False,
        long_text: str = "truncate",
        chunk_overlap: int = 64,
        batch_tokens: int | None = None,
        max_batch_rows: int = 256,
        prompt: str | Sequence[str | None] | None = None,
        examples: Any = None,
        per_row: bool | None = None,
        rac_examples: Any = None,
        row_problems: Sequence[RowOutcome | None] | None = None,
    ) -> Output:
        """Like :meth:`classify`, and also each row's outcome, which texts were cut, and the run's counts.

        `labels` is one label set for every row, or (per_row) one label set per row: a list of label lists,
        or a list of mappings (one hierarchy per row, as in the reference). `row_labels` gives each row its
        own labels, and a row whose labels are null takes the shared `labels`. `threshold`, `prompt` and
        `examples` may also be given one per text, and `rac_examples` (retrieval-augmented examples) shared
        or one list per text, as the reference takes them (:mod:`gliclass_pipelines.core.per_text`).
        `row_problems` marks rows the caller found unusable (an engine's bad cell): they fail so.
        """
        texts = with_rac_examples(list(texts), rac_examples)
        options = per_text_options(len(texts), threshold, prompt, examples)
        check_run_options(
            threshold if options is None else 0.0, long_text, chunk_overlap, batch_tokens, max_batch_rows
        )
        if row_labels is not None:
            refuse_per_text(labels, "the shared labels beside row_labels")
            labels, per_row = labels_for_rows(row_labels, labels), True
        per_row = is_per_row(labels) if per_row is None else per_row
        if options is not None and not per_row:
            labels, per_row = [labels] * len(texts), True
        limit = max_chunk_chars()
        given = row_problems or [None] * len(texts)
        problems = [p or text_problem(t) or chunk_problem(t, long_text, limit) for t, p in zip(texts, given)]
        options = options or [TextOptions(threshold, prompt, examples)] * len(texts)
        plans = self._plans(labels, per_row, problems, options)
        stats = RunStats()
        keys = [None if p is not None else (text, id(plan)) for text, plan, p in zip(texts, plans, problems)]
        firsts, slots = deduplicate(keys)
        stats.duplicates = len(texts) - len(firsts) - sum(p is not None for p in problems)
        unique_plans = [plans[i] for i in firsts]
        encoded = self._encode([texts[i] for i in firsts], unique_plans, long_text, chunk_overlap)
        logits = self._score(encoded.sequences, len(firsts), batch_tokens, max_batch_rows, stats)
        for slot in encoded.streamed:
            logits[slot], failure, encoded.truncated[slot] = self._score_stream(
                texts[firsts[slot]], unique_plans[slot], chunk_overlap, batch_tokens, max_batch_rows, stats
            )
            encoded.failed.update({slot: failure} if failure else {})
        results: list[list[dict[str, Any]] | None] = [None] * len(texts)
        truncated = [False] * len(texts)
        for i, slot in enumerate(slots):
            if slot is not None and slot in encoded.failed:
                problems[i] = encoded.failed[slot]
            elif slot is not None:
                results[i] = predictions(plans[i], logits[slot], multi_label, return_all)
                truncated[i] = encoded.truncated[slot]
        return self._finish(results, truncated, problems, stats)

    def _plans(
        self, labels: Any, per_row: bool, problems: list[RowOutcome | None], options: list[TextOptions]
    ) -> list[LabelPlan | None]:
        if per_row:
            return self.planner.row_plans(labels, problems, options)
        if not options:
            return []
        threshold, prompt, examples = options[0]
        return [self.prepare(labels, threshold=threshold, prompt=prompt, examples=examples)] * len(options)

    def _finish(
        self,
        results: list[list[dict[str, Any]] | None],
        truncated: list[bool],
        problems: list[RowOutcome | None],
        stats: RunStats,
    ) -> Output:
        outcomes = [RowOutcome.ok() if p is None else p for p in problems]
        for outcome, cut in zip(outcomes, truncated):
            stats.count(outcome, cut)
        stats.add(self.load_report.take())  # the first run after a load reports it, once
        with self._lock:
            self.metrics.add(stats)
        return Output(results, truncated, outcomes, stats)

    def prepare(
        self,
        labels: Any,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        prompt: str | None = None,
        examples: Any = None,
    ) -> LabelPlan:
        """Check and tokenize a label set once (raises ConfigError); later calls reuse the plan."""
        refuse_per_text(labels, "labels")
        return self.planner.prepare(labels, threshold=threshold, prompt=prompt, examples=examples)

    def batches(
        self, texts: Sequence[str], labels: Any, batch_tokens: int | None = None, max_batch_rows: int = 256
    ) -> list[Batch]:
        """The batches :meth:`run` would forward for these (non-null) texts: for benchmarks and tools."""
        plan = self.prepare(labels)
        encoded = self._encode(list(texts), [plan] * len(texts), "truncate", 0)
        return self.plan_batches(encoded.sequences, batch_tokens, max_batch_rows)

    @property
    def default_batch_tokens(self) -> int:
        return default_batch_tokens(self.device)

    # ------------------------------------------------------------------------------------------------
    # The stages

    def _encode(self, texts: list[str], plans: list[LabelPlan], long_text: str, overlap: int) -> Encoded:
        return self.encoder.encode(texts, plans, long_text, overlap)

    def plan_batches(
        self, sequences: list[EncodedSequence], batch_tokens: int | None = None, max_batch_rows: int = 256
    ) -> list[Batch]:
        """Sort by length and cut batches by a padded-token budget, keeping each batch's padding under 10%."""
        budget = batch_tokens or self.default_batch_tokens
        cuts = cut_batches([len(s.ids) for s in sequences], budget, max_batch_rows)
        return [collate([sequences[i] for i in cut], self.pad_id) for cut in cuts]

    def _score(
        self,
        sequences: list[EncodedSequence],
        n_rows: int,
        batch_tokens: int | None,
        max_batch_rows: int,
        stats: RunStats,
    ) -> list[np.ndarray]:
        """Run every sequence and combine each row's logits."""
        logits = empty_logits(sequences, n_rows)
        self._run_batches(logits, sequences, batch_tokens, max_batch_rows, stats)
        return logits

    def _run_batches(
        self,
        logits: list[np.ndarray],
        sequences: list[EncodedSequence],
        batch_tokens: int | None,
        max_batch_rows: int,
        stats: RunStats,
    ) -> None:
        for batch in self.plan_batches(sequences, batch_tokens, max_batch_rows):
            stats.batches += 1
            stats.sequences += len(batch.sequences)
            stats.real_tokens += batch.real_tokens
            stats.padded_tokens += batch.padded_tokens
            combine(logits, batch.sequences, self._forward_resilient(batch, stats))

    def _score_stream(
        self,
        text: str,
        plan: LabelPlan,
        overlap: int,
        batch_tokens: int | None,
        max_batch_rows: int,
        stats: RunStats,
    ) -> tuple[np.ndarray, RowOutcome | None, bool]:
        """One long text's logits, its windows made and scored a batch at a time; why the tokenizer failed
        on it (or None); and whether it was cut (into more than one window for a label group)."""
        logits = [np.full(len(plan.labels), -np.inf)]
        windows, count = self.encoder.stream(0, text, plan, overlap), 0
        while True:
            try:
                sequences = next(windows)
            except StopIteration:
                return logits[0], None, count > len(plan.groups)
            except BaseException as exc:
                if not is_tokenizer_failure(exc):
                    raise
                return logits[0], tokenizer_failed(exc), False
            count += len(sequences)
            self._run_batches(logits, sequences, batch_tokens, max_batch_rows, stats)

    def _forward_resilient(self, batch: Batch, stats: RunStats) -> np.ndarray:
        """Forward a batch; on CUDA out-of-memory, halve it and retry (the results are identical)."""
        try:
            return self.forward(batch)
        except torch.OutOfMemoryError:
            if len(batch.sequences) == 1:
                raise
            stats.oom_splits += 1
            logger.warning("CUDA out of memory on a batch of %d; halving it", len(batch.sequences))
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            half = len(batch.sequences) // 2
            parts = [
                collate(batch.sequences[:half], self.pad_id),
                collate(batch.sequences[half:], self.pad_id),
            ]
            return np.concatenate([self._forward_resilient(p, stats) for p in parts])

    def forward(self, batch: Batch) -> np.ndarray:
        """Logits of one batch as a float32 array, padded label slots included."""
        return self.forward_pass(batch)


def check_run_options(
    threshold: float, long_text: str, overlap: int, batch_tokens: int | None, max_batch_rows: int
) -> None:
    check_threshold(threshold)
    if long_text not in LONG_TEXT_POLICIES:
        raise ConfigError(f"long_text must be one of {LONG_TEXT_POLICIES}, got {long_text!r}")
    if isinstance(overlap, bool) or not isinstance(overlap, numbers.Integral) or overlap < 0:
        raise ConfigError(f"chunk_overlap must be an integer >= 0, got {overlap!r}")
    check_positive_int(batch_tokens, "batch_tokens")
    check_positive_int(max_batch_rows, "max_batch_rows", optional=False)
