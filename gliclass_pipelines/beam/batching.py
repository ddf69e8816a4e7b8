"""Beam-side batching for the GLiClass handler: element parsing (text, labels, prompt and threshold cells),
token weights and BatchElements arguments.

Pure Python over elements and settings: no model. Weights come from the engine's token estimate.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Mapping
from typing import Any

import apache_beam as beam
from apache_beam.ml.inference.base import ModelHandler

from gliclass_pipelines._common.checks import check_positive_int
from gliclass_pipelines._common.redaction import shorten
from gliclass_pipelines.core.batching import RUN_TOKENS
from gliclass_pipelines.core.encoding import estimate_label_tokens, estimate_tokens
from gliclass_pipelines.errors import ConfigError, GLiClassPipelinesError
from gliclass_pipelines.taxonomy.labels import unordered

DEFAULT_BATCH_TOKENS = RUN_TOKENS  # estimated tokens per Beam batch: the engine's one-call budget
_SUPPORTS_LENGTH_BUCKETS = "batch_length_fn" in inspect.signature(ModelHandler.__init__).parameters


class ElementError(GLiClassPipelinesError, ValueError):
    """An element that is not a str, a mapping or a beam.Row with a usable text field and labels."""


# ----------------------------------------------------------------------------------------------------------
# Elements


def extract(element: Any, text_field: str, labels_field: str | None) -> tuple[Any, Any]:
    """(text, per-element labels or None) of one element; ElementError if it is malformed."""
    if element is None or isinstance(element, str):
        return element, None
    if isinstance(element, Mapping):
        if text_field not in element:
            keys = sorted(map(str, element))[:10]
            raise ElementError(f"element has no {text_field!r} field (its keys: {keys})")
        text, labels = element[text_field], element.get(labels_field) if labels_field else None
    elif isinstance(element, beam.Row):
        if not hasattr(element, text_field):
            raise ElementError(f"beam.Row has no {text_field!r} field ({element!r:.200})")
        text = getattr(element, text_field)
        labels = getattr(element, labels_field, None) if labels_field else None
    else:
        raise ElementError(
            f"element is a {type(element).__name__}; give a str, a mapping or a beam.Row "
            f"with a {text_field!r} field"
        )
    if text is not None and not isinstance(text, str):
        raise ElementError(f"field {text_field!r} is a {type(text).__name__}, not a string")
    return text, _check_labels(labels, labels_field)


def option_cells(element: Any, prompt_field: str | None, threshold_field: str | None) -> tuple[Any, Any]:
    """The (prompt, threshold) cells of an element that `extract` accepted: None for a str element, an
    unset field or a missing one (the job's shared value). The core judges each cell."""
    return _cell(element, prompt_field), _cell(element, threshold_field)


def _cell(element: Any, field: str | None) -> Any:
    if field is None:
        return None
    if isinstance(element, Mapping):
        return element.get(field)
    return getattr(element, field, None) if isinstance(element, beam.Row) else None


def _check_labels(labels: Any, field: str | None) -> Any:
    """The element's labels: a list of label strings, or its hierarchy (a mapping, or a list of them)."""
    if labels is None or isinstance(labels, Mapping):
        return labels
    if isinstance(labels, str) or not isinstance(labels, list | tuple):
        why = unordered(labels) or f"got {type(labels).__name__}"
        raise ElementError(
            f"field {field!r} must be a list of label strings or a mapping of groups to labels: {why}"
        )
    # no nested lists: Beam's Parquet reader hands a map over as a list of (key, value) tuples
    bad = [x for x in labels if not isinstance(x, str | Mapping)]
    if bad:
        raise ElementError(f"field {field!r} must hold strings (or mappings of groups) only, got {bad[:5]!r}")
    return list(labels)


def _unkeyed(element: Any) -> Any:
    # KeyedModelHandler hands its batching kwargs (element_size_fn) (key, example) pairs
    return element[1] if type(element) is tuple and len(element) == 2 else element


class TokenWeight:
    """element_size_fn / batch_length_fn: an element's estimated tokens, labels and its own prompt included,
    at most `limit`."""

    def __init__(
        self,
        text_field: str,
        labels_field: str | None,
        label_tokens: int,
        cap: int | None,
        limit: int | None = None,
        prompt_field: str | None = None,
    ) -> None:
        self.text_field, self.labels_field, self.prompt_field = text_field, labels_field, prompt_field
        self.label_tokens, self.cap, self.limit = label_tokens, cap, limit

    def capped(self, limit: int) -> TokenWeight:
        fields = (self.text_field, self.labels_field)
        return TokenWeight(*fields, self.label_tokens, self.cap, limit, self.prompt_field)

    def __call__(self, element: Any) -> int:
        element = _unkeyed(element)
        try:
            text, labels = extract(element, self.text_field, self.labels_field)
        except ElementError:
            return 1
        label_tokens = self.label_tokens if labels is None else estimate_label_tokens(labels)
        prompt, _ = option_cells(element, self.prompt_field, None)
        prompt_tokens = estimate_tokens(prompt) if isinstance(prompt, str) else 0
        weight = estimate_tokens(text, self.cap) + label_tokens + prompt_tokens
        return min(weight, self.limit) if self.limit else weight


def batching_kwargs(
    weight: TokenWeight,
    *,
    min_batch_tokens: int | None = None,
    max_batch_tokens: int | None = None,
    min_batch_size: int | None = None,
    max_batch_size: int | None = None,
    max_batch_duration_secs: float | None = None,
    bucket_boundaries: list[int] | None = None,
) -> dict[str, Any]:
    """ModelHandler's batching arguments: token-weighted batches, or element counts (stateful batching)."""
    _check_positive(
        min_batch_tokens=min_batch_tokens,
        max_batch_tokens=max_batch_tokens,
        min_batch_size=min_batch_size,
        max_batch_size=max_batch_size,
    )
    counts = {"min_batch_size": min_batch_size, "max_batch_size": max_batch_size}
    counted = min_batch_size is not None or max_batch_size is not None
    if counted or max_batch_duration_secs is not None:
        if min_batch_tokens is not None or max_batch_tokens is not None:
            raise ConfigError(
                "min/max_batch_tokens apply to token-weighted batches; with min/max_batch_size or "
                "max_batch_duration_secs Beam counts elements, so give element counts only"
            )
        _check_order("min_batch_size", min_batch_size or 1, "max_batch_size", max_batch_size)
        if max_batch_duration_secs is None:
            return counts
        _check_duration(max_batch_duration_secs)
        counts["max_batch_duration_secs"] = max_batch_duration_secs
        if _SUPPORTS_LENGTH_BUCKETS:
            counts.update(batch_length_fn=weight, batch_bucket_boundaries=bucket_boundaries)
        return counts
    # by default min == max: Beam's adaptive sizing amortizes a per-batch fixed cost, while here a
    # bigger batch is what pays (the engine sorts it by length, so less padding)
    high = max_batch_tokens or max(DEFAULT_BATCH_TOKENS, min_batch_tokens or 0)
    low = min_batch_tokens or high
    _check_order("min_batch_tokens", low, "max_batch_tokens", high)
    # BatchElements emits an empty batch when one element outweighs its target, so cap the weights
    return {"min_batch_size": low, "max_batch_size": high, "element_size_fn": weight.capped(low)}


def _check_positive(**values: Any) -> None:
    for name, value in values.items():
        check_positive_int(value, name)


def _check_duration(value: Any) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(
            f"max_batch_duration_secs must be a positive number of seconds, got {shorten(repr(value))}"
        )


def _check_field(value: Any, name: str, *, optional: bool) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{name} must be a field name (a non-empty string), got {shorten(repr(value))}")


def _check_order(low_name: str, low: int, high_name: str, high: int | None) -> None:
    if high is not None and low > high:
        raise ConfigError(f"{low_name} ({low}) is larger than {high_name} ({high})")
