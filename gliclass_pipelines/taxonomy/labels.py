"""Label text rules, written once: the marker tokens, the duplicate form, the label cap, flattening.

Hierarchical labels are flattened exactly like the reference package's
``gliclass.pipeline.flatten_hierarchical_labels``: a mapping ``{"sentiment": ["positive"]}`` becomes
``"sentiment.positive"``, in insertion order. Lists may also nest (a list inside a list adds no prefix
level), and tuples count as lists. Standard library only.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterator, Mapping, MappingView, Sequence, Set
from typing import Any

from gliclass_pipelines._common.show import show
from gliclass_pipelines.errors import ConfigError

#: Special tokens the model's input layout is built from; a label containing one would corrupt it.
LABEL_MARK, SEP_MARK, EXAMPLE_MARK = "<<LABEL>>", "<<SEP>>", "<<EXAMPLE>>"
MARKERS: tuple[str, ...] = (LABEL_MARK, SEP_MARK, EXAMPLE_MARK)

#: Environment variable that overrides Taxonomy.MAX_LABELS (the most labels one taxonomy may hold).
MAX_LABELS_ENV = "GLICLASS_PIPELINES_MAX_LABELS"
#: Most labels in one taxonomy, unless Taxonomy.MAX_LABELS or $GLICLASS_PIPELINES_MAX_LABELS says otherwise.
DEFAULT_MAX_LABELS = 100_000
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u180e"))


def check_unicode(text: str, what: str) -> None:
    """Refuse a str that cannot be encoded as UTF-8 (a lone surrogate): no tokenizer can read it."""
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ConfigError(
            f"{what} {show(text)} is not valid Unicode (a lone surrogate at character {err.start}); "
            "fix its encoding."
        ) from err


def normalize_label(label: str) -> str:
    """The form two labels are compared in for duplicates.

    Zero-width characters removed, NFKC-normalised (``café`` composed or decomposed, fullwidth
    ``ｓｐｏｒｔｓ``), casefolded, whitespace stripped and collapsed.
    """
    text = unicodedata.normalize("NFKC", label.translate(_ZERO_WIDTH))
    return " ".join(unicodedata.normalize("NFKC", text.casefold()).split())


def max_labels(default: int) -> int:
    """Most labels in one taxonomy: $GLICLASS_PIPELINES_MAX_LABELS if set, else ``default``."""
    raw = os.environ.get(MAX_LABELS_ENV, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"{MAX_LABELS_ENV} must be a positive integer, got {show(raw)}.")
    return int(raw)


def unordered(value: object) -> str | None:
    """Why ``value`` cannot give labels in an order of the caller's, or None when it can.

    A set's order follows ``PYTHONHASHSEED``, a dict view's its mapping's, an iterator is read once;
    and the order of labels changes a uni-encoder's scores. The one check every labels entry point uses.
    """
    if isinstance(value, Set | MappingView | Iterator):
        return (
            f"a {type(value).__name__} has no order of its own, and label order changes a uni-encoder's "
            "scores; give a list (sorted(...) for a set)"
        )
    return None


def refuse_unordered(value: object, where: str) -> None:
    """Raise ConfigError when ``value`` is an unordered collection (:func:`unordered`)."""
    reason = unordered(value)
    if reason:
        raise ConfigError(f"{where}: {reason}.")


def _too_many_labels(cap: int) -> ConfigError:
    return ConfigError(
        f"the taxonomy has more than {cap:,} labels, the cap on one taxonomy "
        f"(Taxonomy.MAX_LABELS, or ${MAX_LABELS_ENV}); split it or raise the cap."
    )


# --------------------------------------------------------------------------------------------------
# Flattening


def flatten_labels(
    labels: Sequence[Any] | Mapping[str, Any], separator: str = ".", cap: int | None = None
) -> list[str]:
    """Flatten (possibly hierarchical) labels into a list of label strings.

    Same order and joining as ``gliclass.pipeline.flatten_hierarchical_labels``: a mapping's keys become
    prefixes joined with ``separator`` (``{"a": {"b": ["c"]}}`` gives ``["a.b.c"]``); a string value is a
    single label; a list's items are labels. In addition, list items may themselves be mappings or lists;
    a nested list adds no prefix level. Labels keep their text exactly as given.

    Raises ConfigError for anything that is not a str, list, tuple or mapping, for an empty label or group
    name, for a group name that is not a str, and for a group whose value is missing (None).
    """
    check_separator(separator)
    if isinstance(labels, str):
        raise ConfigError(
            f"labels must be a list or a mapping of labels, got the single string {show(labels)}. "
            "Wrap one label in a list, or load a file with Taxonomy.from_file(path)."
        )
    refuse_unordered(labels, "labels")
    if not isinstance(labels, Mapping | list | tuple):
        raise ConfigError(
            f"labels must be a list of str or a nested mapping of groups to labels, "
            f"got {type(labels).__name__}: {show(labels)}."
        )
    out: list[str] = []
    try:
        _flatten_into(labels, None, separator, out, "labels", cap or max_labels(DEFAULT_MAX_LABELS))
    except RecursionError as err:
        raise ConfigError("labels are nested too deeply; a taxonomy needs a few levels at most.") from err
    return out


def _flatten_into(  # noqa: PLR0913 - recursive walk state
    node: object, prefix: str | None, separator: str, out: list[str], where: str, cap: int
) -> None:
    if isinstance(node, str):
        if not node.strip():
            raise ConfigError(f"empty label {show(node)} at {where}; remove it or give it a name.")
        if len(out) >= cap:
            raise _too_many_labels(cap)
        out.append(node if prefix is None else f"{prefix}{separator}{node}")
    elif isinstance(node, Mapping):
        for key, value in node.items():
            here = f"{where}[{show(key)}]"
            if not isinstance(key, str):
                raise ConfigError(
                    f"group name {show(key)} at {here} has type {type(key).__name__}, not a str; "
                    "quote it (in YAML, yes/no/on/off and numbers are not strings unless quoted)."
                )
            if not key.strip():
                raise ConfigError(f"empty group name {show(key)} at {where}; give the group a name.")
            if value is None or (isinstance(value, Mapping | list | tuple) and not value):
                raise ConfigError(
                    f"group {show(key)} at {here} has no labels (its value is {show(value)}); "
                    "give it a list of labels or remove it."
                )
            child = key if prefix is None else f"{prefix}{separator}{key}"
            _flatten_into(value, child, separator, out, here, cap)
    elif isinstance(node, list | tuple):
        for i, item in enumerate(node):
            _flatten_into(item, prefix, separator, out, f"{where}[{i}]", cap)
    else:
        refuse_unordered(node, f"labels at {where}")
        raise ConfigError(
            f"label {show(node)} at {where} has type {type(node).__name__}; labels must be str "
            "(groups: a list or mapping). Quote it (in YAML, numbers and yes/no are not strings unless "
            "quoted)."
        )


def copy_structure(node: object) -> object:
    """A private copy of a label structure: mappings become dicts, tuples become lists."""
    if isinstance(node, Mapping):
        return {key: copy_structure(value) for key, value in node.items()}
    if isinstance(node, list | tuple):
        return [copy_structure(item) for item in node]
    return node


# --------------------------------------------------------------------------------------------------
# Field checks


def check_separator(separator: object) -> str:
    if not isinstance(separator, str) or not separator:
        raise ConfigError(
            f"separator must be a non-empty str (it joins group and label names), got {show(separator)}; "
            'use the default ".".'
        )
    return separator


def check_labels(labels: object, cap: int) -> tuple[str, ...]:
    refuse_unordered(labels, "Taxonomy labels")
    if isinstance(labels, str) or not isinstance(labels, list | tuple):
        hint = " For nested labels use Taxonomy.from_labels(...)." if isinstance(labels, Mapping) else ""
        raise ConfigError(
            f"Taxonomy labels must be a list or tuple of str, got {type(labels).__name__}: {show(labels)}."
            + hint
        )
    if not labels:
        raise ConfigError("the taxonomy has no labels; give at least one label.")
    if len(labels) > cap:
        raise _too_many_labels(cap)
    seen: dict[str, str] = {}
    for i, label in enumerate(labels):
        if not isinstance(label, str):
            raise ConfigError(
                f"label #{i} has type {type(label).__name__}, not a str: {show(label)}. "
                "Quote it (in YAML, numbers and yes/no are not strings unless quoted)."
            )
        if not label.strip():
            raise ConfigError(f"label #{i} is empty or whitespace only ({show(label)}); remove it.")
        check_unicode(label, "label")
        for marker in MARKERS:
            if marker in label:
                raise ConfigError(
                    f"label {show(label)} contains the marker {marker!r}, which the model uses to lay out "
                    "its input; rename the label."
                )
        key = normalize_label(label)
        if key in seen:
            first = seen[key]
            same = "is given twice" if first == label else f"and {show(label)} are the same label"
            raise ConfigError(
                f"duplicate label: {show(first)} {same} once case, whitespace, Unicode form (NFKC) and "
                "zero-width characters are ignored; keep only one."
            )
        seen[key] = label
    return tuple(labels)
