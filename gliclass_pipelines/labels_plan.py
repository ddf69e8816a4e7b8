"""Label sets prepared once: label groups that fit a sequence, thresholds, per-row label lists.

A label set is checked and tokenized once per (taxonomy, threshold) and cached. Labels are never cut:
when a label set is too long for one sequence it is split into groups, each leaving room for the text.
Per-row label lists fall back to the shared labels where a row has none.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from gliclass_pipelines.errors import ConfigError
from gliclass_pipelines.outcomes import RowOutcome
from gliclass_pipelines.taxonomy import EXAMPLE_MARK, LABEL_MARK, SEP_MARK, Example, Taxonomy

if TYPE_CHECKING:
    from gliclass_pipelines.encoding import TextEncoder

PLAN_CACHE_SIZE = 4096
Tokenize = Callable[[list[str]], list[list[int]]]


@dataclass(frozen=True)
class LabelGroup:
    """Labels that fit in one sequence, with the token ids that go before and after the text."""

    labels: tuple[str, ...]
    offset: int
    head: tuple[int, ...]
    tail: tuple[int, ...]


@dataclass(frozen=True)
class LabelPlan:
    """A label set prepared once: its groups (uni-encoder) or label embeddings (bi-encoder).

    ``prompt`` is the task prompt of the rows that use this plan; ``examples`` its few-shot examples
    in the model's input format.
    """

    labels: tuple[str, ...]
    groups: tuple[LabelGroup, ...]
    thresholds: np.ndarray
    key: Any = field(compare=False, default=None)
    prompt: str = field(compare=False, default="")
    examples: str = field(compare=False, default="")


EMPTY_PLAN = LabelPlan((), (), np.zeros(0))


def format_examples(examples: Sequence[Example]) -> str:
    """Few-shot examples in the reference's training format, closed by one <<SEP>>."""
    if not examples:
        return ""
    parts = [f"{EXAMPLE_MARK}{ex.text} \nLabels:\n {', '.join(ex.labels)}" for ex in examples]
    return "".join(parts) + SEP_MARK


def label_block(labels: Sequence[str]) -> str:
    return "".join(f"{LABEL_MARK}{label}" for label in labels) + SEP_MARK


def reference_string(text: str, labels: Sequence[str], prompt: str, examples: str, prompt_first: bool) -> str:
    """The input string the reference pipeline builds for a uni-encoder."""
    section = label_block(labels) + prompt
    return section + text + examples if prompt_first else text + section + examples


def label_groups(
    labels: tuple[str, ...],
    prompt: str,
    examples: str,
    tokenize: Tokenize,
    *,
    room: int,
    max_length: int,
    prompt_first: bool,
    max_labels: int | None = None,
) -> list[LabelGroup]:
    """Split the labels into groups whose label tokens (with prompt and examples) fit in `room`, of at
    most `max_labels` labels each (the model's label slots, when it allocates a fixed number)."""

    def ids(text: str) -> list[int]:
        return tokenize([text])[0] if text else []

    def group(part: tuple[str, ...], offset: int) -> LabelGroup:
        block = label_block(part)
        if prompt_first:
            return LabelGroup(part, offset, tuple(ids(block)), tuple(ids(examples)))
        return LabelGroup(part, offset, (), tuple(ids(block + prompt + examples)))

    fixed = len(ids(SEP_MARK + prompt)) + len(ids(examples))
    sizes = [len(x) for x in tokenize([f"{LABEL_MARK}{label}" for label in labels])]
    groups, start, used = [], 0, fixed
    for i, size in enumerate(sizes):
        if (used + size > room or i - start == max_labels) and i > start:
            groups.append(group(labels[start:i], start))
            start, used = i, fixed
        used += size
        if used > room:
            raise ConfigError(
                f"label {labels[i]!r} (with the prompt and examples) needs {used} tokens, more than the "
                f"{room} a sequence of max_length={max_length} can spare for labels; shorten it"
            )
    groups.append(group(labels[start:], start))
    return groups


def is_per_row(labels: Any) -> bool:
    """Whether `labels` is one label list per row (rather than one shared label set)."""
    return (
        isinstance(labels, (list, tuple))
        and len(labels) > 0
        and all(x is None or isinstance(x, (list, tuple, np.ndarray)) for x in labels)
        and not all(x is None for x in labels)
    )


def is_missing(value: Any) -> bool:
    """A null or NaN cell."""
    return value is None or (isinstance(value, float) and value != value)


def labels_for_rows(row_labels: Sequence[Any], shared: Any = None) -> list[Any]:
    """Each row's own labels; a row without any (null or NaN) takes the shared labels, when there are."""
    if shared is None:
        return list(row_labels)
    return [shared if is_missing(labels) else labels for labels in row_labels]


def row_labels_key(row_labels: Any) -> tuple | Taxonomy | RowOutcome:
    """A per-row label set as a cache key (null or NaN: no labels), or the outcome saying it is unusable."""
    if is_missing(row_labels):
        return ()
    if isinstance(row_labels, Taxonomy):
        return row_labels
    if isinstance(row_labels, (list, tuple, np.ndarray)):
        return tuple(row_labels)
    reason = f"invalid labels: per-row labels must be a list of str, got {type(row_labels).__name__}"
    return RowOutcome.failed(reason, "invalid_labels")


def examples_of(examples: Any) -> tuple[Example, ...]:
    if not examples:
        return ()
    return Taxonomy.from_labels(["x"], examples=examples).examples


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


class LabelPlanner:
    """Builds and caches the label plans of one model (its tokenizer and architecture)."""

    def __init__(self, encoder: TextEncoder, bi_encoder: bool) -> None:
        self.encoder = encoder
        self.bi_encoder = bi_encoder
        self._lock = threading.Lock()
        self._plans: OrderedDict[Any, LabelPlan] = OrderedDict()

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
                examples_of(examples) or taxonomy.examples,
                taxonomy.separator,
            )
        return self._plan(taxonomy, threshold)

    def row_plans(
        self,
        row_labels: Sequence[Any],
        problems: list[RowOutcome | None],
        threshold: float,
        prompt: str | None,
        examples: Any,
    ) -> list[LabelPlan | None]:
        """Each usable row's plan; a row whose labels are unusable gets None and its outcome in `problems`."""
        if len(row_labels) != len(problems):
            raise ConfigError(f"per-row labels: got {len(row_labels)} label lists for {len(problems)} texts")
        plans: list[LabelPlan | None] = []
        seen: dict[Any, LabelPlan | RowOutcome] = {}
        options = (threshold, prompt, examples)
        for i, labels in enumerate(row_labels):
            if problems[i] is not None:
                plans.append(None)
                continue
            key = row_labels_key(labels)
            if isinstance(key, RowOutcome):
                plan: LabelPlan | RowOutcome = key
            elif not _hashable(key):  # e.g. a nested group: planned uncached
                plan = self._row_plan(key, *options)
            else:
                if key not in seen:
                    seen[key] = self._row_plan(key, *options)
                plan = seen[key]
            if isinstance(plan, RowOutcome):
                problems[i] = plan
                plans.append(None)
            else:
                plans.append(plan)
        return plans

    def _row_plan(
        self, labels: Any, threshold: float, prompt: str | None, examples: Any
    ) -> LabelPlan | RowOutcome:
        """One row's label plan, or the failed outcome saying why its labels are unusable."""
        if not isinstance(labels, Taxonomy) and not labels:
            return EMPTY_PLAN
        try:
            if not isinstance(labels, Taxonomy):
                labels = list(labels)
            return self.prepare(labels, threshold=threshold, prompt=prompt, examples=examples)
        except ConfigError as exc:
            return RowOutcome.failed(f"invalid labels: {exc}", "invalid_labels")

    def _plan(self, taxonomy: Taxonomy, threshold: float) -> LabelPlan:
        key = (taxonomy, threshold)
        with self._lock:
            plan = self._plans.get(key)
            if plan is not None:
                self._plans.move_to_end(key)
                return plan
        plan = self._build(taxonomy, threshold)
        with self._lock:
            self._plans[key] = plan
            if len(self._plans) > PLAN_CACHE_SIZE:
                self._plans.popitem(last=False)
        return plan

    def _build(self, taxonomy: Taxonomy, threshold: float) -> LabelPlan:
        thresholds = np.asarray(taxonomy.thresholds_for(threshold), dtype=np.float64)
        prompt = taxonomy.prompt or ""
        if self.bi_encoder:
            group = LabelGroup(taxonomy.labels, 0, (), ())
            return LabelPlan(taxonomy.labels, (group,), thresholds, taxonomy, prompt)
        examples = format_examples(taxonomy.examples)
        groups = self.encoder.label_groups(taxonomy.labels, prompt, examples)
        return LabelPlan(taxonomy.labels, tuple(groups), thresholds, taxonomy, prompt, examples)
