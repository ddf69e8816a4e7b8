"""Validation rules that several modules apply, each written once."""

from __future__ import annotations

import math
import numbers
from typing import Any

from gliclass_pipelines._common.redaction import shorten
from gliclass_pipelines.errors import ConfigError

DEFAULT_THRESHOLD = 0.5  # the score a label needs where neither the call nor the taxonomy sets one


def check_threshold(value: Any, name: str = "threshold") -> float:
    """A score threshold: a real number in [0, 1] (not a bool, not NaN)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        shown = f"{type(value).__name__} {shorten(repr(value))}"
        raise ConfigError(f"{name} must be a number between 0 and 1, got {shown}")
    if math.isnan(value) or not 0 <= value <= 1:
        raise ConfigError(f"{name} must be a number between 0 and 1, got {shorten(repr(value))}")
    return float(value)


def check_positive_int(value: Any, name: str, *, optional: bool = True) -> int | None:
    """A count or size: a positive int (not a bool); None passes when ``optional``."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {shorten(repr(value))}")
    return int(value)


def split_labels(text: str, delimiter: str = ",") -> list[str]:
    """A delimited label list ("a, b,c"): each label stripped, empty ones dropped. The one parser of label
    text, for labels and gold labels alike (Spark columns split the same way in spark/columns.py)."""
    return [label.strip() for label in text.split(delimiter) if label.strip()]
