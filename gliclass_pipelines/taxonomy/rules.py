"""The taxonomy's rules beside its labels: per-label and per-group thresholds, the task prompt, and
few-shot examples (:class:`Example`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gliclass_pipelines._common.checks import check_threshold
from gliclass_pipelines._common.show import did_you_mean, show, show_list
from gliclass_pipelines.errors import ConfigError
from gliclass_pipelines.taxonomy.labels import (
    check_unicode,
    refuse_unordered,
)

_EXAMPLE_KEYS: tuple[str, ...] = ("text", "labels", "true_labels")


def _threshold_pairs(raw: object) -> list[tuple[object, object]]:
    if raw is None:
        return []
    if isinstance(raw, Mapping):
        return list(raw.items())
    if isinstance(raw, list | tuple):
        pairs = []
        for item in raw:
            if isinstance(item, str) or not isinstance(item, list | tuple) or len(item) != 2:
                raise ConfigError(
                    f"thresholds must be a mapping of label (or group) -> number, or (label, number) pairs; "
                    f"got the item {show(item)}."
                )
            pairs.append((item[0], item[1]))
        return pairs
    raise ConfigError(
        f"thresholds must be a mapping of label (or group) -> number, got {type(raw).__name__}: {show(raw)}."
    )


def _group_prefixes(label: str, separator: str) -> list[str]:
    """Every group prefix of a label, longest first: "a.b.c" -> ["a.b", "a"]."""
    prefixes = []
    start = label.find(separator, 1)
    while start != -1:
        prefixes.append(label[:start])
        start = label.find(separator, start + 1)
    prefixes.reverse()
    return prefixes


def resolve_thresholds(raw: object, labels: tuple[str, ...], separator: str) -> tuple[tuple[str, float], ...]:
    """Per-label overrides in label order; for each label the most specific matching key wins."""
    given: dict[str, float] = {}
    for key, value in _threshold_pairs(raw):
        if not isinstance(key, str):
            raise ConfigError(
                f"threshold key {show(key)} has type {type(key).__name__}; "
                "keys must be label or group names (str)."
            )
        if key in given:
            raise ConfigError(f"threshold for {key!r} is given twice; keep one.")
        given[key] = check_threshold(value, f"threshold for {key!r}")
    if not given:
        return ()
    matched: set[str] = set()
    resolved: list[tuple[str, float]] = []
    for label in labels:
        winner: str | None = None
        for candidate in [label, *_group_prefixes(label, separator)]:
            if candidate in given:
                matched.add(candidate)
                if winner is None:
                    winner = candidate
        if winner is not None:
            resolved.append((label, given[winner]))
    unknown = [key for key in given if key not in matched]
    if unknown:
        names = set(labels)
        for label in labels:
            names.update(_group_prefixes(label, separator))
        key = unknown[0]
        raise ConfigError(
            f"threshold key {key!r} names neither a label nor a group of labels "
            f"(a group is a prefix of labels ending before {separator!r})."
            f"{did_you_mean(key, names)} Labels: {show_list(labels)}."
        )
    return tuple(resolved)


def check_prompt(prompt: object) -> str | None:
    if prompt is None:
        return None
    if not isinstance(prompt, str):
        raise ConfigError(f"prompt must be a str (a task description) or None, got {type(prompt).__name__}.")
    check_unicode(prompt, "prompt")
    # The reference treats an empty prompt as no prompt; store it that way so equal behaviour compares equal.
    return prompt or None


def check_examples(examples: object) -> tuple[Example, ...]:
    if examples is None:
        return ()
    if isinstance(examples, str | Mapping | Example) or not isinstance(examples, list | tuple):
        raise ConfigError(
            'examples must be a list of {"text": ..., "labels": [...]} items, '
            f"got {type(examples).__name__}: {show(examples)}."
        )
    return tuple(Example.coerce(example) for example in examples)


# --------------------------------------------------------------------------------------------------
# Values


@dataclass(frozen=True)
class Example:
    """One few-shot example: a text and the labels it has (a list or tuple of str, stored as a tuple)."""

    text: str
    labels: tuple[str, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or not self.text.strip():
            raise ConfigError(
                f"few-shot example without text (text={show(self.text)}); "
                "give each example a non-empty 'text'."
            )
        labels = self.labels
        refuse_unordered(labels, f"few-shot example {show(self.text)}: labels")
        if isinstance(labels, str) or not isinstance(labels, list | tuple):
            hint = " Wrap a single label in a list." if isinstance(labels, str) else ""
            raise ConfigError(
                f"few-shot example {show(self.text)}: labels must be a list of str, "
                f"got {type(labels).__name__} {show(labels)}.{hint}"
            )
        bad = [label for label in labels if not isinstance(label, str)]
        if bad:
            raise ConfigError(
                f"few-shot example {show(self.text)}: labels must be str, got {show_list(bad)}; quote them."
            )
        check_unicode(self.text, "few-shot example text")
        for label in labels:
            check_unicode(label, "few-shot example label")
        object.__setattr__(self, "labels", tuple(labels))

    @classmethod
    def coerce(cls, obj: Example | Mapping[str, Any]) -> Example:
        """An Example as is, or one built from ``{"text": ..., "labels": [...]}`` (or ``"true_labels"``)."""
        if isinstance(obj, Example):
            return obj
        if not isinstance(obj, Mapping):
            raise ConfigError(
                f'a few-shot example must be a mapping {{"text": ..., "labels": [...]}} or an Example, '
                f"got {type(obj).__name__}: {show(obj)}."
            )
        unknown = [key for key in obj if key not in _EXAMPLE_KEYS]
        if unknown:
            raise ConfigError(
                f"few-shot example has unknown key(s) {show_list(unknown)}; "
                f"allowed keys: {', '.join(_EXAMPLE_KEYS)}."
                + (did_you_mean(unknown[0], _EXAMPLE_KEYS) if isinstance(unknown[0], str) else "")
            )
        if "text" not in obj:
            raise ConfigError(f"few-shot example without text: {show(dict(obj))}; add a 'text' key.")
        if "labels" in obj and "true_labels" in obj:
            raise ConfigError(
                f"few-shot example {show(obj['text'])} has both 'labels' and 'true_labels'; keep one."
            )
        if "labels" not in obj and "true_labels" not in obj:
            raise ConfigError(f"few-shot example {show(obj['text'])} has no 'labels'; add a list of labels.")
        labels = obj["labels"] if "labels" in obj else obj["true_labels"]
        return cls(text=obj["text"], labels=labels)

    def to_dict(self) -> dict[str, Any]:
        """The reference's form: ``{"text": ..., "labels": [...]}``."""
        return {"text": self.text, "labels": list(self.labels)}
