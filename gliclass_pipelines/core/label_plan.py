"""Label sets prepared once: label groups that fit a sequence, thresholds, per-row label lists.

A label set is checked and tokenized once per (taxonomy, threshold) and cached. Labels are never cut:
when a label set is too long for one sequence it is split into groups, each leaving room for the text.
Per-row label lists fall back to the shared labels where a row has none.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from gliclass_pipelines._common.checks import DEFAULT_THRESHOLD
from gliclass_pipelines.core.outcomes import RowOutcome
from gliclass_pipelines.errors import ConfigError
from gliclass_pipelines.taxonomy.labels import EXAMPLE_MARK, LABEL_MARK, SEP_MARK, unordered
from gliclass_pipelines.taxonomy.rules import Example
from gliclass_pipelines.taxonomy.taxonomy import Taxonomy

PLAN_CACHE_SIZE = 4096
Tokenize = Callable[[list[str]], list[list[int]]]


@dataclass(frozen=True)
class LabelGroup:
    """Labels that fit in one sequence, with the token ids that go before and after the text."""

    labels: tuple[str, ...]
    offset: int
    head: tuple[int, ...]
    tail: tuple[int, ...]
    decoder: tuple[int, ...] = ()  # encoder-decoder architectures: the label sequence, on its own


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


def label_section(labels: Sequence[str], prompt: str, fused: bool = False) -> str:
    """The labels and prompt as the reference lays them out: each label after its <<LABEL>> then the
    prompt (uni-encoder), or the prompt then one bare <<LABEL>> per label (bi-encoder-fused, whose label
    embeddings replace those tokens)."""
    if fused:
        return (f"{prompt} " if prompt else "") + LABEL_MARK * len(labels) + SEP_MARK
    return label_block(labels) + prompt


def reference_string(
    text: str, labels: Sequence[str], prompt: str, examples: str, prompt_first: bool, fused: bool = False
) -> str:
    """The input string the reference pipeline builds for a uni-encoder (or a bi-encoder-fused)."""
    section = label_section(labels, prompt, fused)
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
    fused: bool = False,
) -> list[LabelGroup]:
    """Split the labels into groups whose label tokens (with prompt and examples) fit in `room`, of at
    most `max_labels` labels each (the model's label slots, when it allocates a fixed number)."""

    def ids(text: str) -> list[int]:
        return tokenize([text])[0] if text else []

    def group(part: tuple[str, ...], offset: int) -> LabelGroup:
        if prompt_first:  # the uni-encoder's prompt is tokenized with the text (TextEncoder.text_ids)
            head = label_section(part, prompt, fused) if fused else label_block(part)
            return LabelGroup(part, offset, tuple(ids(head)), tuple(ids(examples)))
        return LabelGroup(part, offset, (), tuple(ids(label_section(part, prompt, fused) + examples)))

    fixed = len(ids(label_section((), prompt, fused) if fused else SEP_MARK + prompt)) + len(ids(examples))
    sizes = [1] * len(labels) if fused else [len(x) for x in tokenize([f"{LABEL_MARK}{x}" for x in labels])]
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


def is_label_list(value: Any) -> bool:
    """Whether one row's labels cell is an ordered list of labels: a list, a tuple or a NumPy array."""
    return isinstance(value, (list, tuple, np.ndarray))


def is_per_row(labels: Any) -> bool:
    """Whether `labels` is one label set per row (rather than one shared label set).

    As in the reference, a list of label lists is one list per row, and a list of mappings is one
    hierarchy per row. A list that starts with a mapping and also holds a str is neither: ConfigError.
    """
    if not isinstance(labels, (list, tuple)) or not labels:
        return False
    rows = [x for x in labels if x is not None]
    if rows and isinstance(rows[0], Mapping) and any(isinstance(x, str) for x in rows):
        item = next(i for i, x in enumerate(labels) if isinstance(x, str))
        raise ConfigError(
            "labels is a list that starts with a mapping, which the reference reads as one hierarchy per "
            f"text, but item {item} is a str. Give one mapping or label list per text, or one mapping "
            "(all groups in it) for labels every text shares."
        )
    return bool(rows) and all(is_label_list(x) or isinstance(x, Mapping) for x in rows)


def refuse_per_text(labels: Any, what: str) -> None:
    """ConfigError for a list starting with a mapping where one shared label set is expected: the reference
    reads that list as one hierarchy per text, so merging its mappings would be a guess."""
    if isinstance(labels, (list, tuple)) and labels and isinstance(labels[0], Mapping):
        raise ConfigError(
            f"{what} is a list of mappings, which the reference (gliclass) reads as one hierarchy per text, "
            "not as one taxonomy. For labels every text shares, give one mapping with all the groups (or "
            "Taxonomy.from_labels(...)); for a hierarchy per text, give them as per-row labels."
        )


def is_missing(value: Any) -> bool:
    """A null or NaN cell."""
    return value is None or (isinstance(value, float) and value != value)


def labels_for_rows(row_labels: Sequence[Any], shared: Any = None) -> list[Any]:
    """Each row's own labels; a row without any (null or NaN) takes the shared labels, when there are."""
    if shared is None:
        return list(row_labels)
    return [shared if is_missing(labels) else labels for labels in row_labels]


def row_labels_key(row_labels: Any) -> Any:
    """A per-row label set in plain Python (null or NaN: no labels; a mapping: the row's hierarchy), or the
    outcome saying it is unusable."""
    if is_missing(row_labels):
        return ()
    if isinstance(row_labels, Taxonomy):
        return row_labels
    if is_label_list(row_labels) or isinstance(row_labels, Mapping):
        try:
            return _plain(row_labels)
        except RecursionError:
            return RowOutcome.failed("invalid labels: nested too deeply", "invalid_labels")
    reason = unordered(row_labels) or (
        "per-row labels must be a list of str or a mapping of groups to labels, "
        f"got {type(row_labels).__name__}"
    )
    return RowOutcome.failed(f"invalid labels: {reason}", "invalid_labels")


def _plain(value: Any) -> Any:
    """Arrays (as Spark hands array and map columns over) as tuples, mappings as dicts, at every level."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return tuple(_plain(item) for item in value)
    return value


def _cache_key(labels: Any) -> Any:
    """A hashable key for a plain per-row label set (a mapping's pairs in order), or None."""
    try:
        return _key_of(labels)
    except RecursionError:
        return None


def _key_of(labels: Any) -> Any:
    if isinstance(labels, dict):
        items = tuple((key, _key_of(item)) for key, item in labels.items())
        return None if any(v is None for _, v in items) else (dict, items)
    if isinstance(labels, tuple):
        items = tuple(_key_of(item) for item in labels)
        return None if any(v is None for v in items) else items
    return labels if _hashable(labels) else None


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


class LabelGrouper(Protocol):
    """What the planner asks of a text encoder (encoding.TextEncoder): a label set cut into groups."""

    def label_groups(self, labels: tuple[str, ...], prompt: str, examples: str) -> list[LabelGroup]: ...


class LabelPlanner:
    """Builds and caches the label plans of one model (its tokenizer and architecture)."""

    def __init__(self, encoder: LabelGrouper, bi_encoder: bool) -> None:
        self.encoder = encoder
        self.bi_encoder = bi_encoder
        self._lock = threading.Lock()
        self._plans: OrderedDict[Any, LabelPlan] = OrderedDict()

    def prepare(
        self,
        labels: Any,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        prompt: str | None = None,
        examples: Any = None,
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
        options: Sequence[tuple[float, str | None, Any]],
    ) -> list[LabelPlan | None]:
        """Each usable row's plan from its labels and its (threshold, prompt, examples); a row whose labels
        are unusable gets None and its outcome in `problems`."""
        if len(row_labels) != len(problems):
            raise ConfigError(f"per-row labels: got {len(row_labels)} label lists for {len(problems)} texts")
        plans: list[LabelPlan | None] = []
        seen: dict[Any, LabelPlan | RowOutcome] = {}
        for i, labels in enumerate(row_labels):
            if problems[i] is not None:
                plans.append(None)
                continue
            key = row_labels_key(labels)
            cached = None if isinstance(key, RowOutcome) else _cache_key((key, *options[i]))
            if isinstance(key, RowOutcome):
                plan: LabelPlan | RowOutcome = key
            elif cached is None:
                plan = self._row_plan(key, *options[i])
            else:
                if cached not in seen:
                    seen[cached] = self._row_plan(key, *options[i])
                plan = seen[cached]
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
            if isinstance(labels, tuple):
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


@dataclass
class EncodedSequence:
    """One model input: a text (or a window of it) with one label group."""

    row: int
    plan: LabelPlan
    group: LabelGroup
    ids: list[int]
