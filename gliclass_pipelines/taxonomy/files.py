"""Reading a taxonomy from YAML, JSON or plain text, with bounds against hostile files.

At most ``Taxonomy.MAX_FILE_BYTES`` are read; YAML anchors and aliases are refused (a few hundred bytes
of nested aliases expand to billions of labels), and so is a key given twice in one mapping.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from gliclass_pipelines._common.show import show
from gliclass_pipelines.errors import ConfigError

T = TypeVar("T")


def _is_file(name: str) -> bool:
    try:
        return os.path.isfile(name)
    except (OSError, ValueError):  # e.g. a name too long, or with a NUL byte
        return False


def read_file(name: str | bytes, limit: int) -> str:
    try:
        with open(name, "rb") as handle:
            data = handle.read(limit + 1)
        if len(data) > limit:
            raise ConfigError(
                f"taxonomy file {show(name)} is larger than {limit:,} bytes (Taxonomy.MAX_FILE_BYTES); "
                "a taxonomy this large is not a label list."
            )
        return data.decode("utf-8-sig")
    except FileNotFoundError as err:
        raise ConfigError(f"taxonomy file not found: {show(name)}; check the path.") from err
    except IsADirectoryError as err:
        raise ConfigError(f"taxonomy path {show(name)} is a directory; give the path of a file.") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"taxonomy file {show(name)} is not UTF-8 text: {err}.") from err
    except OSError as err:
        raise ConfigError(f"cannot read taxonomy file {show(name)}: {err}.") from err


def read_source(source: object, limit: int) -> tuple[str, str]:
    """(text, origin) of a path or of literal text; a single-line str naming an existing file is a path."""
    if isinstance(source, os.PathLike):
        name = os.fspath(source)
        return read_file(name, limit), str(name)
    if not isinstance(source, str):
        raise ConfigError(
            f"source must be a path (str or os.PathLike) or document text, got {type(source).__name__}: "
            f"{show(source)}."
        )
    if "\n" not in source and _is_file(source):
        return read_file(source, limit), source
    if len(source) > limit:
        raise ConfigError(
            f"taxonomy text of {len(source):,} characters is larger than Taxonomy.MAX_FILE_BYTES ({limit:,})."
        )
    return source, "<text>"


def _looks_like_path(source: object) -> bool:
    return isinstance(source, str) and "\n" not in source and not source.lstrip().startswith(("{", "["))


def parse_yaml(text: str, origin: str) -> object:
    try:
        import yaml
    except ImportError as err:  # pragma: no cover - pyyaml is a dependency
        raise ConfigError("reading YAML needs PyYAML: pip install pyyaml") from err

    class _StrictLoader(yaml.SafeLoader):
        """SafeLoader refusing anchors and aliases (billion laughs) and a key given twice in one mapping."""

        def compose_node(self, parent: Any, index: Any) -> Any:
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
                raise ConfigError(
                    f"{origin}: YAML anchors and aliases (&name, *name, <<: *name) are not allowed in a "
                    f"taxonomy (line {event.start_mark.line + 1}): they let a few bytes expand without "
                    "bound. Write the labels out."
                )
            return super().compose_node(parent, index)

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: set[object] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:  # an unhashable key; let PyYAML report it
                    continue
                if duplicate:
                    raise ConfigError(
                        f"{origin}: key {show(key)} is given twice in one mapping "
                        f"(line {key_node.start_mark.line + 1}); merge the two entries."
                    )
            return super().construct_mapping(node, deep=deep)

    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: safe
    except yaml.YAMLError as err:
        raise ConfigError(f"{origin}: not valid YAML: {err}") from err
    except RecursionError as err:
        raise ConfigError(f"{origin}: the YAML is nested too deeply to be a taxonomy.") from err


def parse_json(text: str, origin: str, source: object) -> object:
    import json

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise ConfigError(
                    f"{origin}: key {key!r} is given twice in one object; merge the two entries."
                )
            out[key] = value
        return out

    try:
        return json.loads(text, object_pairs_hook=unique)
    except RecursionError as err:
        raise ConfigError(f"{origin}: the JSON is nested too deeply to be a taxonomy.") from err
    except json.JSONDecodeError as err:
        if origin == "<text>" and _looks_like_path(source):
            raise ConfigError(
                f"{show(source)} is neither an existing file nor JSON text; check the path."
            ) from err
        raise ConfigError(f"{origin}: not valid JSON: {err}") from err


def from_parsed(build: Callable[[Any], T], data: object, origin: str, source: object, kind: str) -> T:
    """``build(data)`` (Taxonomy.from_dict), its errors prefixed with where the document came from."""
    if data is None:
        raise ConfigError(f"{origin}: the {kind} document is empty; it should hold the labels.")
    if isinstance(data, str) and origin == "<text>" and _looks_like_path(source):
        raise ConfigError(
            f"{show(source)} is neither an existing file nor {kind} text with labels; check the path."
        )
    try:
        return build(data)
    except ConfigError as err:
        if str(err).startswith(f"{origin}:"):
            raise
        raise ConfigError(f"{origin}: {err}") from err
