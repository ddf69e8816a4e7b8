"""What to classify into: flat or hierarchical labels, per-label thresholds, a task prompt, few-shot examples.

A :class:`Taxonomy` is an immutable, hashable, validated value. It is built from Python objects
(:meth:`Taxonomy.from_labels`, :meth:`Taxonomy.from_dict`), from YAML or JSON text or files, or from a
plain text file with one label per line. Hierarchical labels are flattened exactly like the reference
package's ``gliclass.pipeline.flatten_hierarchical_labels``: a mapping ``{"sentiment": ["positive"]}``
becomes ``"sentiment.positive"``, in insertion order. Lists may also nest (a list inside a list adds no
prefix level), and tuples count as lists.

Every problem is reported up front as a :class:`~gliclass_pipelines.errors.ConfigError` naming the
offending value, so that a bad taxonomy fails when a job is configured, not hours into a run.

Label text rules and flattening live in :mod:`gliclass_pipelines.taxonomy.labels`, thresholds, prompt and
examples in :mod:`gliclass_pipelines.taxonomy.rules`, reading files in
:mod:`gliclass_pipelines.taxonomy.files`. Importing this module is cheap: it
uses the standard library only (PyYAML is imported inside :meth:`Taxonomy.from_yaml`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from gliclass_pipelines._common.checks import check_threshold
from gliclass_pipelines._common.show import did_you_mean, show, show_list
from gliclass_pipelines.errors import ConfigError
from gliclass_pipelines.taxonomy.labels import (
    DEFAULT_MAX_LABELS,
    check_labels,
    check_separator,
    copy_structure,
    flatten_labels,
    max_labels,
    refuse_unordered,
)
from gliclass_pipelines.taxonomy.rules import Example, check_examples, check_prompt, resolve_thresholds

__all__ = ["Taxonomy"]

_CONFIG_KEYS: tuple[str, ...] = ("labels", "thresholds", "prompt", "examples", "separator")


@dataclass(frozen=True)
class Taxonomy:
    """An immutable, validated set of labels with optional thresholds, task prompt and few-shot examples.

    Direct construction is validated and normalised like the constructors: lists become tuples,
    ``thresholds`` may be given as a mapping or (key, value) pairs whose keys are labels or group
    prefixes, and is stored as per-label overrides in label order; ``examples`` may be mappings.
    ``structure`` (the nested labels the flat list came from) is kept for :meth:`to_dict` only and is
    ignored by equality and hashing; when given it must flatten to ``labels``.

    Bounds against hostile input: at most :attr:`MAX_LABELS` labels (``$GLICLASS_PIPELINES_MAX_LABELS``
    overrides it), taxonomy files and texts of at most :attr:`MAX_FILE_BYTES`, and no YAML anchors or
    aliases (a few hundred bytes of nested aliases expand to billions of labels).
    """

    MAX_LABELS: ClassVar[int] = DEFAULT_MAX_LABELS
    MAX_FILE_BYTES: ClassVar[int] = 32 * 1024 * 1024

    labels: tuple[str, ...]
    thresholds: tuple[tuple[str, float], ...] = ()
    prompt: str | None = None
    examples: tuple[Example, ...] = ()
    separator: str = "."
    structure: object = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        separator = check_separator(self.separator)
        cap = max_labels(self.MAX_LABELS)
        labels = check_labels(self.labels, cap)
        structure = self.structure
        if structure is not None:
            flat = tuple(flatten_labels(structure, separator, cap))  # type: ignore[arg-type]
            if flat != labels:
                raise ConfigError(
                    f"structure flattens to {show_list(flat)}, which differs from labels "
                    f"{show_list(labels)}; "
                    "build the taxonomy with Taxonomy.from_labels(structure), or pass structure=None."
                )
            structure = copy_structure(structure)
        thresholds = resolve_thresholds(self.thresholds, labels, separator)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "structure", structure)
        object.__setattr__(self, "thresholds", thresholds)
        object.__setattr__(self, "prompt", check_prompt(self.prompt))
        object.__setattr__(self, "examples", check_examples(self.examples))
        object.__setattr__(self, "_overrides", dict(thresholds))

    # ---- constructors ------------------------------------------------------------------------------

    @classmethod
    def from_labels(
        cls,
        labels: Sequence[Any] | Mapping[str, Any],
        *,
        thresholds: Mapping[str, float] | None = None,
        prompt: str | None = None,
        examples: Sequence[Example | Mapping[str, Any]] | None = None,
        separator: str = ".",
    ) -> Taxonomy:
        """Build from a list of labels, a nested mapping of groups, or a nested list.

        ``thresholds`` maps a label or a group prefix (``"sentiment"`` covers ``"sentiment.*"``) to a
        number in [0, 1]; for each label the most specific key wins. ``examples`` are Examples or mappings
        ``{"text": str, "labels": [str, ...]}`` (``"true_labels"`` is accepted in place of ``"labels"``).
        """
        flat = flatten_labels(labels, separator, max_labels(cls.MAX_LABELS))
        if thresholds is not None and not isinstance(thresholds, Mapping):
            raise ConfigError(
                f"thresholds must be a mapping of label (or group) -> number, "
                f"got {type(thresholds).__name__}: {show(thresholds)}."
            )
        return cls(
            labels=tuple(flat),
            thresholds=tuple(thresholds.items()) if thresholds else (),
            prompt=prompt,
            examples=check_examples(examples),
            separator=separator,
            structure=labels,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | Sequence[Any]) -> Taxonomy:
        """Build from a config mapping, or from bare labels.

        The config mapping has the keys ``labels``, ``thresholds`` (mapping), ``prompt``, ``examples`` (list)
        and ``separator``, as in :meth:`from_labels`. Only ``labels`` is required; a key whose value is None
        counts as absent; an unknown key is an error. A bare list of labels, or a bare mapping of groups that
        uses none of the keys above, is read as the labels themselves.
        """
        if isinstance(data, list | tuple):
            return cls.from_labels(data)
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"a taxonomy config must be a mapping with a 'labels' key (or a bare list of labels), "
                f"got {type(data).__name__}: {show(data)}."
            )
        if not any(key in data for key in _CONFIG_KEYS):
            return cls.from_labels(data)
        unknown = [key for key in data if key not in _CONFIG_KEYS]
        if unknown:
            first = unknown[0]
            raise ConfigError(
                f"unknown key(s) {show_list(unknown)} in taxonomy config; "
                f"allowed keys: {', '.join(_CONFIG_KEYS)}."
                + (did_you_mean(first, _CONFIG_KEYS) if isinstance(first, str) else "")
                + " (For a label hierarchy whose groups use those names, nest it under 'labels'.)"
            )
        if data.get("labels") is None:
            raise ConfigError(
                f"taxonomy config has no 'labels' (keys given: {show_list(data)}); "
                "add the labels to classify into."
            )
        separator = data.get("separator")
        return cls.from_labels(
            data["labels"],
            thresholds=data.get("thresholds"),
            prompt=data.get("prompt"),
            examples=data.get("examples"),
            separator="." if separator is None else separator,
        )

    @classmethod
    def from_yaml(cls, source: str | os.PathLike[str]) -> Taxonomy:
        """Build from a YAML file (a PathLike, or a str naming an existing file) or from YAML text."""
        from gliclass_pipelines.taxonomy.files import from_parsed, parse_yaml, read_source

        text, origin = read_source(source, cls.MAX_FILE_BYTES)
        return from_parsed(cls.from_dict, parse_yaml(text, origin), origin, source, "YAML")

    @classmethod
    def from_json(cls, source: str | os.PathLike[str]) -> Taxonomy:
        """Build from a JSON file (a PathLike, or a str naming an existing file) or from JSON text."""
        from gliclass_pipelines.taxonomy.files import from_parsed, parse_json, read_source

        text, origin = read_source(source, cls.MAX_FILE_BYTES)
        return from_parsed(cls.from_dict, parse_json(text, origin, source), origin, source, "JSON")

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Taxonomy:
        """Build from a file, by extension: .yaml/.yml, .json, or else plain text with one label per line.

        In a plain text file, surrounding whitespace is stripped from each line, and blank lines and lines
        starting with ``#`` are skipped.
        """
        if not isinstance(path, str | os.PathLike):
            raise ConfigError(f"path must be a str or os.PathLike, got {type(path).__name__}: {show(path)}.")
        from gliclass_pipelines.taxonomy.files import from_parsed, parse_json, parse_yaml, read_file

        name = os.fspath(path)
        text = read_file(name, cls.MAX_FILE_BYTES)
        extension = os.path.splitext(name)[1].lower()
        if extension in (".yaml", ".yml"):
            return from_parsed(cls.from_dict, parse_yaml(text, name), name, path, "YAML")
        if extension == ".json":
            return from_parsed(cls.from_dict, parse_json(text, name, path), name, path, "JSON")
        lines = (line.strip() for line in text.splitlines())
        labels = [line for line in lines if line and not line.startswith("#")]
        try:
            return cls.from_labels(labels)
        except ConfigError as err:
            raise ConfigError(f"{name}: {err}") from err

    @classmethod
    def coerce(cls, obj: Taxonomy | Sequence[Any] | Mapping[str, Any], *, separator: str = ".") -> Taxonomy:
        """A Taxonomy as is; a list of labels or a nested mapping through :meth:`from_labels`.

        A mapping that uses the config keys (``labels``, ``thresholds``, ...) is read as a config, like
        :meth:`from_dict`, with ``separator`` as the default separator.
        """
        if isinstance(obj, Taxonomy):
            return obj
        if isinstance(obj, Mapping) and any(key in obj for key in _CONFIG_KEYS):
            if "separator" not in obj or obj["separator"] is None:
                obj = {**obj, "separator": separator}
            return cls.from_dict(obj)
        if isinstance(obj, Mapping | list | tuple):
            return cls.from_labels(obj, separator=separator)
        refuse_unordered(obj, "labels")
        hint = " To load a file use Taxonomy.from_file(path)." if isinstance(obj, str | os.PathLike) else ""
        raise ConfigError(
            f"cannot make a Taxonomy from {type(obj).__name__} {show(obj)}; "
            f"pass a Taxonomy, a list of labels or a mapping of groups to labels.{hint}"
        )

    # ---- use ---------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.labels)

    def threshold_for(self, label: str, default: float) -> float:
        """The label's threshold override, or ``default`` when it has none (or is not in the taxonomy)."""
        return self._overrides.get(label, default)  # type: ignore[attr-defined]

    def thresholds_for(self, default: float) -> list[float]:
        """One threshold per label, in label order: the override where there is one, else ``default``."""
        default = check_threshold(default, "default threshold")
        overrides: dict[str, float] = self._overrides  # type: ignore[attr-defined]
        return [overrides.get(label, default) for label in self.labels]

    def examples_as_dicts(self) -> list[dict[str, Any]] | None:
        """Few-shot examples in the reference's form ``[{"text": ..., "labels": [...]}]``; None when none."""
        if not self.examples:
            return None
        return [example.to_dict() for example in self.examples]

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (JSON/YAML-ready) that :meth:`from_dict` turns back into an equal Taxonomy.

        ``labels`` is the original nested structure when there is one; optional keys appear only when set.
        """
        out: dict[str, Any] = {
            "labels": list(self.labels) if self.structure is None else copy_structure(self.structure)
        }
        if self.thresholds:
            out["thresholds"] = dict(self.thresholds)
        if self.prompt is not None:
            out["prompt"] = self.prompt
        if self.examples:
            out["examples"] = self.examples_as_dicts()
        if self.separator != ".":
            out["separator"] = self.separator
        return out
