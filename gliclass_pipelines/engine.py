"""The classifier every engine adapter calls: encode, plan batches, forward, postprocess.

Texts are tokenized once, label sections once per label set, and the two are joined as token ids, so
labels are never truncated: when a sequence is too long, the text is cut (or split into windows) and
the labels kept. Sequences are sorted by length and cut into batches by a padded-token budget; text
pooling is masked, so a text's scores do not depend on which texts share its batch.
"""

from __future__ import annotations

import logging
import numbers
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from gliclass_pipelines.errors import ConfigError
from gliclass_pipelines.loading import REGISTRY, ModelSource, load_checkpoint, resolve_device, resolve_dtype
from gliclass_pipelines.outcomes import Output, RowOutcome, RunStats
from gliclass_pipelines.taxonomy import Example, Taxonomy

logger = logging.getLogger(__name__)

LABEL_MARK, SEP_MARK, EXAMPLE_MARK = "<<LABEL>>", "<<SEP>>", "<<EXAMPLE>>"
LONG_TEXT_POLICIES = ("truncate", "chunk")
_PLAN_CACHE_SIZE = 4096


@dataclass(frozen=True)
class LabelGroup:
    """Labels that fit in one sequence, with the token ids that go before and after the text."""

    labels: tuple[str, ...]
    offset: int
    head: tuple[int, ...]
    tail: tuple[int, ...]


@dataclass(frozen=True)
class LabelPlan:
    """A label set prepared once: its groups (uni-encoder) or label embeddings (bi-encoder)."""

    labels: tuple[str, ...]
    groups: tuple[LabelGroup, ...]
    thresholds: np.ndarray
    key: Any = field(compare=False, default=None)


@dataclass
class Sequence_:
    """One model input: a text (or a window of it) with one label group."""

    row: int
    plan: LabelPlan
    group: LabelGroup
    ids: list[int]


@dataclass
class Batch:
    sequences: list[Sequence_]
    input_ids: torch.Tensor
    attention_mask: torch.Tensor

    @property
    def real_tokens(self) -> int:
        return sum(len(s.ids) for s in self.sequences)

    @property
    def padded_tokens(self) -> int:
        return int(self.input_ids.numel())


def _text_problem(text: Any) -> RowOutcome | None:
    """Why a text gets no result (a null, blank, non-string or not-UTF-8-encodable text), else None."""
    if text is None or (isinstance(text, float) and text != text):
        return RowOutcome.null_input("null text", "null_text")
    if not isinstance(text, str):
        return RowOutcome.failed(f"text is a {type(text).__name__}, not a string", "not_a_string")
    if not text.strip():
        return RowOutcome.null_input("blank text", "blank_text")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate: tokenizers refuse the whole batch
            reason = f"text is not valid Unicode: lone surrogate {text[exc.start]!r} at character {exc.start}"
            return RowOutcome.failed(reason, "lone_surrogate")
    return None


def _row_labels_key(row_labels: Any) -> tuple | RowOutcome:
    """A per-row label list as a tuple (null or NaN: no labels), or why it is not a list of labels."""
    if row_labels is None or (isinstance(row_labels, float) and row_labels != row_labels):
        return ()
    if isinstance(row_labels, (list, tuple, np.ndarray)):
        return tuple(row_labels)
    reason = f"invalid labels: per-row labels must be a list of str, got {type(row_labels).__name__}"
    return RowOutcome.failed(reason, "invalid_labels")


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def format_examples(examples: Sequence[Example]) -> str:
    """Few-shot examples in the reference's training format, closed by one <<SEP>>."""
    if not examples:
        return ""
    parts = [f"{EXAMPLE_MARK}{ex.text} \nLabels:\n {', '.join(ex.labels)}" for ex in examples]
    return "".join(parts) + SEP_MARK


def label_block(labels: Sequence[str]) -> str:
    return "".join(f"{LABEL_MARK}{label}" for label in labels) + SEP_MARK


class Classifier:
    """A loaded GLiClass model that classifies batches of texts against a label taxonomy.

    Build it with :meth:`load`, which returns the process-wide instance for a (source, device, dtype).
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
        self.inner = model.model
        self.architecture = self.config.architecture_type
        self.prompt_first = bool(self.config.prompt_first)
        self.max_length = check_max_length(max_length, self.config, source)
        self.pooling = self.config.pooling_strategy
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.prefix, self.suffix = _special_affixes(tokenizer)
        self.metrics = RunStats()
        self._lock = threading.Lock()
        self._plans: OrderedDict[Any, LabelPlan] = OrderedDict()
        self._label_embeddings: dict[tuple[str, ...], torch.Tensor] = {}
        self.load_seconds = 0.0
        self.joint_tokenization = not self._segments_match_reference()
        if self.joint_tokenization:
            logger.warning("tokenizer of %s is context-sensitive: tokenizing each row whole", source)

    # ------------------------------------------------------------------------------------------------
    # Loading

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
    ) -> Classifier:
        """The process-wide classifier for (model, device, dtype); loaded on first use, then shared."""
        source = ModelSource.parse(model)
        resolved_device = resolve_device(device, engine_device)
        resolved_dtype = resolve_dtype(dtype, resolved_device)
        if num_threads and torch.get_num_threads() != int(num_threads):  # adapters call this per batch
            torch.set_num_threads(int(num_threads))
        key = (source, resolved_device, resolved_dtype, max_length)
        return REGISTRY.get_or_load(
            key, lambda: cls._load(source, resolved_device, resolved_dtype, max_length)
        )

    @classmethod
    def _load(cls, source: ModelSource, device: str, dtype: str, max_length: int | None) -> Classifier:
        import time

        started = time.perf_counter()
        directory = source.fetch()
        model, tokenizer, label_tokenizer = load_checkpoint(directory, str(source))
        model.to(device=torch.device(device), dtype=getattr(torch, dtype)).eval()
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
        logger.info("loaded %s on %s (%s) in %.1fs", source, device, dtype, clf.load_seconds)
        return clf

    # ------------------------------------------------------------------------------------------------
    # Public API

    def classify(
        self,
        texts: Sequence[str | None],
        labels: Any,
        threshold: float = 0.5,
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
        labels: Any,
        *,
        threshold: float = 0.5,
        multi_label: bool = True,
        return_all: bool = False,
        long_text: str = "truncate",
        chunk_overlap: int = 64,
        batch_tokens: int | None = None,
        max_batch_rows: int = 256,
        prompt: str | None = None,
        examples: Any = None,
        per_row: bool | None = None,
    ) -> Output:
        """Like :meth:`classify`, and also says which texts were truncated and why a result is None."""
        check_run_options(threshold, long_text, chunk_overlap, batch_tokens, max_batch_rows)
        texts = list(texts)
        per_row = is_per_row(labels) if per_row is None else per_row
        row_plans, problems = self._row_plans(texts, labels, per_row, threshold, prompt, examples)
        stats = RunStats()
        unique_rows, first_of, keys = _deduplicate(texts, row_plans, problems)
        stats.duplicates = len(texts) - len(unique_rows) - sum(p is not None for p in problems)
        sequences, truncated_unique = self._encode(
            [texts[i] for i in unique_rows],
            [row_plans[i] for i in unique_rows],
            long_text,
            chunk_overlap,
            prompt_of(labels, prompt),
        )
        logits = self._score(sequences, len(unique_rows), batch_tokens, max_batch_rows, stats)
        results: list[list[dict[str, Any]] | None] = [None] * len(texts)
        truncated = [False] * len(texts)
        for i, key in enumerate(keys):
            if key is None:
                continue
            u = first_of[key]
            plan = row_plans[i]
            results[i] = _predictions(plan, logits[u], multi_label, return_all) if plan.labels else []
            truncated[i] = truncated_unique[u]
        outcomes = [RowOutcome.ok() if p is None else p for p in problems]
        for outcome, cut in zip(outcomes, truncated):
            stats.count(outcome, cut)
        with self._lock:
            self.metrics.add(stats)
        return Output(results, truncated, outcomes, stats)

    def prepare(
        self, labels: Any, *, threshold: float = 0.5, prompt: str | None = None, examples: Any = None
    ) -> LabelPlan:
        """Check and tokenize a label set once (raises ConfigError); later calls reuse the plan."""
        taxonomy = labels if isinstance(labels, Taxonomy) else Taxonomy.coerce(labels)
        if prompt is not None or examples is not None:
            taxonomy = Taxonomy(
                taxonomy.labels,
                taxonomy.thresholds,
                prompt if prompt is not None else taxonomy.prompt,
                _examples(examples) or taxonomy.examples,
                taxonomy.separator,
            )
        return self._plan(taxonomy, threshold)

    def batches(
        self, texts: Sequence[str], labels: Any, batch_tokens: int | None = None, max_batch_rows: int = 256
    ) -> list[Batch]:
        """The batches :meth:`run` would forward for these (non-null) texts: for benchmarks and tools."""
        plan = self.prepare(labels)
        sequences, _ = self._encode(list(texts), [plan] * len(texts), "truncate", 0, prompt_of(labels, None))
        return self.plan_batches(sequences, batch_tokens, max_batch_rows)

    # ------------------------------------------------------------------------------------------------
    # Labels

    def _row_plans(
        self,
        texts: list[Any],
        labels: Any,
        per_row: bool,
        threshold: float,
        prompt: str | None,
        examples: Any,
    ) -> tuple[list[LabelPlan | None], list[RowOutcome | None]]:
        """Each row's label plan, or (None and) the outcome that explains why the row gets no result."""
        problems = [_text_problem(text) for text in texts]
        if not per_row:
            plan = self.prepare(labels, threshold=threshold, prompt=prompt, examples=examples)
            return [plan] * len(texts), problems
        if len(labels) != len(texts):
            raise ConfigError(f"per-row labels: got {len(labels)} label lists for {len(texts)} texts")
        plans: list[LabelPlan | None] = []
        seen: dict[tuple, LabelPlan | RowOutcome] = {}
        options = (threshold, prompt, examples)
        for i, row_labels in enumerate(labels):
            if problems[i] is not None:
                plans.append(None)
                continue
            key = _row_labels_key(row_labels)
            if isinstance(key, RowOutcome):
                plan: LabelPlan | RowOutcome | None = key
            elif not _hashable(key):  # e.g. a nested group: planned uncached
                plan = self._row_plan(key, *options)
            else:
                if key not in seen:
                    seen[key] = self._row_plan(key, *options)
                plan = seen[key]
            if isinstance(plan, RowOutcome):
                problems[i], plan = plan, None
            plans.append(plan)
        return plans, problems

    def _row_plan(
        self, labels: tuple, threshold: float, prompt: str | None, examples: Any
    ) -> LabelPlan | RowOutcome:
        """One row's label plan, or the failed outcome saying why its labels are unusable."""
        if not labels:
            return LabelPlan((), (), np.zeros(0))
        try:
            return self.prepare(list(labels), threshold=threshold, prompt=prompt, examples=examples)
        except ConfigError as exc:
            return RowOutcome.failed(f"invalid labels: {exc}", "invalid_labels")

    def _plan(self, taxonomy: Taxonomy, threshold: float) -> LabelPlan:
        key = (taxonomy, threshold)
        with self._lock:
            plan = self._plans.get(key)
            if plan is not None:
                self._plans.move_to_end(key)
                return plan
        plan = self._build_plan(taxonomy, threshold)
        with self._lock:
            self._plans[key] = plan
            if len(self._plans) > _PLAN_CACHE_SIZE:
                self._plans.popitem(last=False)
        return plan

    def _build_plan(self, taxonomy: Taxonomy, threshold: float) -> LabelPlan:
        thresholds = np.asarray(taxonomy.thresholds_for(threshold), dtype=np.float64)
        if self.architecture == "bi-encoder":
            group = LabelGroup(taxonomy.labels, 0, (), ())
            return LabelPlan(taxonomy.labels, (group,), thresholds, key=taxonomy)
        examples = format_examples(taxonomy.examples)
        groups = self._label_groups(taxonomy.labels, taxonomy.prompt or "", examples)
        return LabelPlan(taxonomy.labels, tuple(groups), thresholds, key=taxonomy)

    def _label_groups(self, labels: tuple[str, ...], prompt: str, examples: str) -> list[LabelGroup]:
        """Split the labels into groups whose sequences leave room for the text."""
        room = self.max_length - len(self.prefix) - len(self.suffix) - self.min_text_tokens
        fixed = len(self._tokens(SEP_MARK + prompt)) + len(self._tokens(examples))
        sizes = [len(ids) for ids in self._tokens_many([f"{LABEL_MARK}{label}" for label in labels])]
        groups, start, used = [], 0, fixed
        for i, size in enumerate(sizes):
            if used + size > room and i > start:
                groups.append(self._group(labels[start:i], start, prompt, examples))
                start, used = i, fixed
            used += size
            if used > room:
                raise ConfigError(
                    f"label {labels[i]!r} (with the prompt and examples) needs {used} tokens, more than the "
                    f"{room} a sequence of max_length={self.max_length} can spare for labels; shorten it"
                )
        groups.append(self._group(labels[start:], start, prompt, examples))
        return groups

    def _group(self, labels: tuple[str, ...], offset: int, prompt: str, examples: str) -> LabelGroup:
        block = label_block(labels)
        if self.prompt_first:
            return LabelGroup(labels, offset, tuple(self._tokens(block)), tuple(self._tokens(examples)))
        return LabelGroup(labels, offset, (), tuple(self._tokens(block + prompt + examples)))

    @property
    def min_text_tokens(self) -> int:
        return max(16, self.max_length // 8)

    # ------------------------------------------------------------------------------------------------
    # Tokens

    def _tokens(self, text: str) -> list[int]:
        return self._tokens_many([text])[0] if text else []

    def _tokens_many(self, texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"]

    def _text_strings(self, texts: list[str], prompt: str) -> list[str]:
        if self.architecture == "bi-encoder":
            return [f"{prompt} {text}" for text in texts] if prompt else texts
        if self.prompt_first:
            return [SEP_MARK + prompt + text for text in texts]
        return texts

    def _text_ids(self, texts: list[str], prompt: str, cap: int | None) -> list[list[int]]:
        """Token ids of each text in its place in the sequence (without labels and special tokens).

        With a cap (truncate policy), very long strings are cut by characters before tokenizing, and
        tokenized whole only if the cut leaves too few tokens to be sure of the first `cap`.
        """
        strings = self._text_strings(texts, prompt)
        limit = None if cap is None else max(4096, cap * 64)
        if limit is not None:
            strings = [s[:limit] if len(s) > limit else s for s in strings]
        ids = self._tokens_many(strings)
        if limit is not None:
            for i, text in enumerate(texts):
                if len(text) > limit and len(ids[i]) <= cap + 32:
                    ids[i] = self._tokens_many(self._text_strings([text], prompt))[0]
        if self.architecture == "uni-encoder" and self.prompt_first:
            ids = [row[1:] for row in ids]
        return ids

    def _encode(
        self, texts: list[str], plans: list[LabelPlan], long_text: str, overlap: int, prompt: str
    ) -> tuple[list[Sequence_], list[bool]]:
        fixed = len(self.prefix) + len(self.suffix)
        cap = self.max_length if long_text == "truncate" else None
        text_ids = self._text_ids(texts, prompt, cap)
        sequences: list[Sequence_] = []
        truncated = [False] * len(texts)
        for row, (ids, plan) in enumerate(zip(text_ids, plans)):
            for group in plan.groups:
                budget = self.max_length - fixed - len(group.head) - len(group.tail)
                if self.joint_tokenization and len(ids) <= budget:
                    windows = [None]
                elif len(ids) <= budget:
                    windows = [ids]
                else:
                    truncated[row] = True
                    windows = [ids[:budget]] if long_text == "truncate" else _windows(ids, budget, overlap)
                for window in windows:
                    full = (
                        self._joint_ids(texts[row], plan, group, prompt)
                        if window is None
                        else [*self.prefix, *group.head, *window, *group.tail, *self.suffix]
                    )
                    sequences.append(Sequence_(row, plan, group, full))
        return sequences, truncated

    def _joint_ids(self, text: str, plan: LabelPlan, group: LabelGroup, prompt: str) -> list[int]:
        taxonomy = plan.key
        examples = format_examples(taxonomy.examples) if isinstance(taxonomy, Taxonomy) else ""
        return self.tokenizer(reference_string(text, group.labels, prompt, examples, self.prompt_first))[
            "input_ids"
        ]

    def _segments_match_reference(self) -> bool:
        """Check that joining separately tokenized segments gives the reference's token ids."""
        if self.architecture != "uni-encoder":
            return True
        probe_text = "A probe text: it checks, token by token, that segments join like the whole."
        labels = ("sports", "science fiction")
        examples = format_examples((Example("An example text.", ("sports",)),))
        prompt = "Classify the text."
        plan = LabelPlan(labels, tuple(self._label_groups(labels, prompt, examples)), np.zeros(2))
        group = plan.groups[0]
        ids = self._text_ids([probe_text], prompt, None)[0]
        joined = [*self.prefix, *group.head, *ids, *group.tail, *self.suffix]
        whole = self.tokenizer(reference_string(probe_text, labels, prompt, examples, self.prompt_first))
        return joined == list(whole["input_ids"])

    # ------------------------------------------------------------------------------------------------
    # Batches and the forward pass

    def plan_batches(
        self, sequences: list[Sequence_], batch_tokens: int | None = None, max_batch_rows: int = 256
    ) -> list[Batch]:
        """Sort by length and cut batches by a padded-token budget, keeping each batch's padding under 10%."""
        budget = batch_tokens or self.default_batch_tokens
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i].ids))
        batches, current, real = [], [], 0
        for i in order:
            length = len(sequences[i].ids)  # the longest so far: lengths ascend
            padded = length * (len(current) + 1)
            if current and (
                padded > budget or len(current) >= max_batch_rows or real + length < 0.9 * padded
            ):
                batches.append(self._collate([sequences[j] for j in current]))
                current, real = [], 0
            current.append(i)
            real += length
        if current:
            batches.append(self._collate([sequences[j] for j in current]))
        return batches

    @property
    def default_batch_tokens(self) -> int:
        """Measured on 2 CPU cores: small sorted batches beat large ones; GPUs want large ones."""
        return 65536 if self.device.type == "cuda" else 1024

    def _collate(self, sequences: list[Sequence_]) -> Batch:
        width = max(len(s.ids) for s in sequences)
        ids = torch.full((len(sequences), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for i, s in enumerate(sequences):
            ids[i, : len(s.ids)] = torch.tensor(s.ids, dtype=torch.long)
            mask[i, : len(s.ids)] = 1
        return Batch(sequences, ids, mask)

    def _score(
        self,
        sequences: list[Sequence_],
        n_rows: int,
        batch_tokens: int | None,
        max_batch_rows: int,
        stats: RunStats,
    ) -> list[np.ndarray]:
        """Run every sequence and combine each row's logits: label groups side by side, windows by max."""
        logits = [np.full(len(p.labels), -np.inf) for p in _row_plan_list(sequences, n_rows)]
        for batch in self.plan_batches(sequences, batch_tokens, max_batch_rows):
            stats.batches += 1
            stats.sequences += len(batch.sequences)
            stats.real_tokens += batch.real_tokens
            stats.padded_tokens += batch.padded_tokens
            out = self._forward_resilient(batch, stats)
            for s, row_logits in zip(batch.sequences, out):
                span = slice(s.group.offset, s.group.offset + len(s.group.labels))
                np.maximum(logits[s.row][span], row_logits[: len(s.group.labels)], out=logits[s.row][span])
        return logits

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
            parts = [self._collate(batch.sequences[:half]), self._collate(batch.sequences[half:])]
            return np.concatenate([self._forward_resilient(p, stats) for p in parts])

    def forward(self, batch: Batch) -> np.ndarray:
        """Logits of one batch as a float32 array (one device-to-host copy), padded label slots included."""
        width = max(len(s.group.labels) for s in batch.sequences)
        with torch.inference_mode():
            ids = batch.input_ids.to(self.device, non_blocking=True)
            mask = batch.attention_mask.to(self.device, non_blocking=True)
            if self.architecture == "bi-encoder":
                logits = self._bi_encoder_logits(ids, mask, batch.sequences, width)
            else:
                logits = self._uni_encoder_logits(ids, mask, width)
            return logits.float().cpu().numpy()

    def _uni_encoder_logits(self, ids: torch.Tensor, mask: torch.Tensor, num_labels: int) -> torch.Tensor:
        inner, config = self.inner, self.config
        hidden = self._encoder_states(inner.encoder_model, ids, mask, inner)
        classes, class_mask, text_states, text_mask = inner._extract_class_features(
            hidden, ids, mask, num_labels
        )
        pooled = masked_pool(self.pooling, text_states, text_mask)
        pooled = inner.text_projector(pooled)
        classes = inner.classes_projector(classes)
        if config.normalize_features:
            pooled = pooled / (pooled.norm(p=2, dim=-1, keepdim=True) + inner.epsilon)
            classes = classes / (classes.norm(p=2, dim=-1, keepdim=True) + inner.epsilon)
        logits = inner.scorer(pooled, classes, text_mask=text_mask)
        if config.normalize_features:
            logits = logits * inner.logit_scale
        return self._calibrated(logits, pooled, classes, class_mask)

    def _encoder_states(
        self, encoder: Any, ids: torch.Tensor, mask: torch.Tensor, inner: Any
    ) -> torch.Tensor:
        config = self.config
        need_all = bool(getattr(config, "squeeze_layers", False)) or config.encoder_layer_id != -1
        if getattr(config, "use_segment_embeddings", False):
            embeds = encoder.get_input_embeddings()(ids) + inner.segment_embeddings(
                inner._create_segment_ids(ids)
            )
            outputs = encoder(inputs_embeds=embeds, attention_mask=mask, output_hidden_states=need_all)
        else:
            outputs = encoder(ids, attention_mask=mask, output_hidden_states=need_all)
        if getattr(config, "squeeze_layers", False):
            return inner.layer_wise_attention(outputs.hidden_states)
        if config.encoder_layer_id != -1:
            return outputs.hidden_states[config.encoder_layer_id]
        return outputs[0]

    def _calibrated(
        self, logits: torch.Tensor, pooled: torch.Tensor, classes: torch.Tensor, class_mask: torch.Tensor
    ) -> torch.Tensor:
        calibrator = getattr(self.model, "calibrator", None)
        if calibrator is None:
            return logits
        beta, bias = calibrator(pooled, classes, logits, class_mask)
        return (beta * logits.float() + bias).to(logits.dtype)

    def _bi_encoder_logits(
        self, ids: torch.Tensor, mask: torch.Tensor, sequences: list[Sequence_], width: int
    ) -> torch.Tensor:
        inner = self.inner
        hidden = inner.encoder_model(ids, attention_mask=mask)[0]
        text = inner.text_projector(masked_pool(self.pooling, hidden, mask))
        if self.config.normalize_features:
            text = torch.nn.functional.normalize(text, p=2, dim=-1, eps=inner.epsilon)
        classes = torch.zeros((len(sequences), width, text.shape[-1]), dtype=text.dtype, device=text.device)
        for i, s in enumerate(sequences):
            embeddings = self._label_embeddings_for(s.plan.labels)
            classes[i, : embeddings.shape[0]] = embeddings
        logits = inner.scorer(text, classes) * inner.logit_scale
        class_mask = torch.zeros((len(sequences), width), dtype=torch.long, device=text.device)
        for i, s in enumerate(sequences):
            class_mask[i, : len(s.plan.labels)] = 1
        logits = torch.where(class_mask == 0, torch.full_like(logits, -1e3), logits)
        return self._calibrated(logits, text, classes, class_mask)

    def _label_embeddings_for(self, labels: tuple[str, ...]) -> torch.Tensor:
        """Bi-encoder label embeddings, computed once per label set, the way the reference computes them."""
        cached = self._label_embeddings.get(labels)
        if cached is not None:
            return cached
        tokens = self.label_tokenizer(
            list(labels), truncation=True, max_length=self.max_length, padding="longest", return_tensors="pt"
        )
        ids = tokens["input_ids"].to(self.device)[None]
        mask = tokens["attention_mask"].to(self.device)[None]
        with torch.inference_mode():
            embeddings = self.inner.encode_classes(
                ids, mask, torch.ones((1, len(labels)), device=self.device)
            )[0]
        with self._lock:
            self._label_embeddings[labels] = embeddings
        return embeddings


# ----------------------------------------------------------------------------------------------------------
# Helpers shared by the steps above


def masked_pool(strategy: str, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Pool token states over real tokens only: the answer a batch of one (no padding) gives."""
    if strategy == "first":
        return states[:, 0]
    if strategy == "last":
        last = mask.long().sum(dim=1) - 1
        return states[torch.arange(states.shape[0], device=states.device), last]
    weights = mask.unsqueeze(-1).to(states.dtype)
    count = weights.sum(dim=1)
    if strategy == "max":
        return states.masked_fill(weights == 0, torch.finfo(states.dtype).min).amax(dim=1)
    if strategy == "abs_max":
        return (states.abs() * weights).amax(dim=1)
    if strategy == "sum":
        return (states * weights).sum(dim=1)
    if strategy == "avg":
        return (states * weights).sum(dim=1) / count
    if strategy == "abs_avg":
        return (states.abs() * weights).sum(dim=1) / count
    if strategy == "rms":
        return ((states.pow(2) * weights).sum(dim=1) / count).sqrt()
    raise ConfigError(f"pooling {strategy!r} is not supported")


def _windows(ids: list[int], size: int, overlap: int) -> list[list[int]]:
    step = max(1, size - min(overlap, size // 2))
    windows, start = [], 0
    while True:
        windows.append(ids[start : start + size])
        if start + size >= len(ids):
            return windows
        start += step


def _predictions(plan: LabelPlan, logits: np.ndarray, multi_label: bool, return_all: bool) -> list[dict]:
    logits = logits.astype(np.float64)
    if multi_label:
        scores = 1.0 / (1.0 + np.exp(-logits))
        keep = np.ones(len(scores), dtype=bool) if return_all else scores >= plan.thresholds
    else:
        shifted = np.exp(logits - logits.max())
        scores = shifted / shifted.sum()
        keep = np.ones(len(scores), dtype=bool) if return_all else np.arange(len(scores)) == scores.argmax()
    order = np.argsort(-scores, kind="stable")
    return [{"label": plan.labels[i], "score": float(scores[i])} for i in order if keep[i]]


def _deduplicate(
    texts: list[Any], plans: list[LabelPlan | None], problems: list[RowOutcome | None]
) -> tuple[list[int], dict[Any, int], list[Any]]:
    """Identical (text, label set) pairs are computed once."""
    unique_rows: list[int] = []
    first_of: dict[Any, int] = {}
    keys: list[Any] = []
    for i, (text, plan) in enumerate(zip(texts, plans)):
        if problems[i] is not None:
            keys.append(None)
            continue
        key = (text, id(plan))
        if key not in first_of:
            first_of[key] = len(unique_rows)
            unique_rows.append(i)
        keys.append(key)
    return unique_rows, first_of, keys


def _row_plan_list(sequences: list[Sequence_], n_rows: int) -> list[LabelPlan]:
    plans: list[Any] = [None] * n_rows
    for s in sequences:
        plans[s.row] = s.plan
    return [p if p is not None else LabelPlan((), (), np.zeros(0)) for p in plans]


def _examples(examples: Any) -> tuple[Example, ...]:
    if not examples:
        return ()
    return Taxonomy.from_labels(["x"], examples=examples).examples


def is_per_row(labels: Any) -> bool:
    return (
        isinstance(labels, (list, tuple))
        and len(labels) > 0
        and all(x is None or isinstance(x, (list, tuple, np.ndarray)) for x in labels)
        and not all(x is None for x in labels)
    )


def prompt_of(labels: Any, prompt: str | None) -> str:
    if prompt is not None:
        return prompt
    return (labels.prompt or "") if isinstance(labels, Taxonomy) else ""


def reference_string(text: str, labels: Sequence[str], prompt: str, examples: str, prompt_first: bool) -> str:
    """The input string the reference pipeline builds for a uni-encoder."""
    section = label_block(labels) + prompt
    return section + text + examples if prompt_first else text + section + examples


def check_run_options(
    threshold: float, long_text: str, overlap: int, batch_tokens: int | None, max_batch_rows: int
) -> None:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise ConfigError(f"threshold must be a number in [0, 1], got {threshold!r}")
    if long_text not in LONG_TEXT_POLICIES:
        raise ConfigError(f"long_text must be one of {LONG_TEXT_POLICIES}, got {long_text!r}")
    if not _is_int(overlap) or overlap < 0:
        raise ConfigError(f"chunk_overlap must be an integer >= 0, got {overlap!r}")
    if batch_tokens is not None and (not _is_int(batch_tokens) or batch_tokens < 1):
        raise ConfigError(f"batch_tokens must be a positive integer, got {batch_tokens!r}")
    if not _is_int(max_batch_rows) or max_batch_rows < 1:
        raise ConfigError(f"max_batch_rows must be a positive integer, got {max_batch_rows!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def max_positions(config: Any) -> int | None:
    """How many positions the encoder has (None: relative positions, no limit)."""
    encoder = config.encoder_config
    relative = encoder.model_type == "deberta-v2" and not getattr(encoder, "position_biased_input", True)
    positions = getattr(encoder, "max_position_embeddings", None)
    return None if relative or not positions else int(positions)


def default_max_length(config: Any) -> int:
    """The reference's 1024, unless the encoder has fewer absolute positions."""
    positions = max_positions(config)
    return 1024 if positions is None else min(1024, positions)


def check_max_length(max_length: int | None, config: Any, source: str) -> int:
    """The sequence length to use; a max_length past the encoder's positions would fail on long rows only."""
    if not max_length:
        return default_max_length(config)
    positions = max_positions(config)
    if positions is not None and max_length > positions:
        raise ConfigError(
            f"max_length={max_length} is more than the {positions} positions of the encoder of {source}; "
            f"give max_length <= {positions} (or leave it unset)"
        )
    return max_length


def _special_affixes(tokenizer: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The special token ids the tokenizer puts before and after a single sequence."""
    marker = tokenizer.convert_tokens_to_ids(SEP_MARK)
    ids = tokenizer(SEP_MARK)["input_ids"]
    at = ids.index(marker)
    return tuple(ids[:at]), tuple(ids[at + 1 :])
