"""The "hierarchical" output: every label's score nested by its group, as the reference's
``return_hierarchical=True`` gives them.

A record maps each group's path (its names joined with the taxonomy's separator: ``"topic"``, or
``"topic.science"`` for a group inside a group) to that group's labels, by their own names, and their
scores: ``map<string, map<string, float>>``. For a taxonomy two levels deep this is the reference's dict
exactly; deeper, the reference's ``{"topic": {"science": {"physics": s}}}`` reads
``{"topic.science": {"physics": s}}`` here, so the type stays fixed however deep the taxonomy goes.
A label outside any group (flat labels) has no place in it: such shared labels are refused when the job
is configured, and such a row's labels fail that row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gliclass_pipelines._common.show import show
from gliclass_pipelines.core.label_plan import _cache_key, is_missing, row_labels_key
from gliclass_pipelines.core.outcomes import RowOutcome
from gliclass_pipelines.errors import ConfigError
from gliclass_pipelines.taxonomy.taxonomy import Taxonomy

#: Each label as (its group's path, its own name, its flat name), in the taxonomy's order.
Groups = tuple[tuple[str, str, str], ...]


def groups_of(labels: Any) -> Groups:
    """The groups of a taxonomy (a Taxonomy, a mapping of groups); ConfigError when a label is in none,
    or when two different groups have the same path."""
    taxonomy = Taxonomy.coerce(labels)
    if taxonomy.structure is None:
        raise _ungrouped(taxonomy.labels[0])
    out: list[tuple[str, str, str]] = []
    _walk(taxonomy.structure, None, (), taxonomy.separator, out, {})
    return tuple(out)


def _walk(  # noqa: PLR0913 - recursive walk state
    node: object,
    prefix: str | None,
    path: tuple[str, ...],
    separator: str,
    out: list[tuple[str, str, str]],
    paths: dict[str, tuple[str, ...]],
) -> None:
    if isinstance(node, str):
        if prefix is None:
            raise _ungrouped(node)
        out.append((prefix, node, f"{prefix}{separator}{node}"))
    elif isinstance(node, Mapping):
        for key, value in node.items():
            child, here = (key if prefix is None else f"{prefix}{separator}{key}"), (*path, key)
            if paths.setdefault(child, here) != here:
                raise ConfigError(
                    f"the groups {show(list(paths[child]))} and {show(list(here))} both have the path "
                    f"{show(child)}, so output='hierarchical' could not tell them apart; rename one"
                )
            _walk(value, child, here, separator, out, paths)
    else:
        for item in node:  # type: ignore[attr-defined]  (a validated structure: a list)
            _walk(item, prefix, path, separator, out, paths)


def _ungrouped(label: str) -> ConfigError:
    return ConfigError(
        f"output='hierarchical' nests scores by group, but label {show(label)} is in no group; give the "
        'labels as a mapping of groups ({"sentiment": ["positive", "negative"]}) or use output="scores"'
    )


def row_groups(
    row_labels: Sequence[Any], shared: Groups | None
) -> tuple[list[Groups | None], list[RowOutcome | None]]:
    """Each row's groups, and the rows whose labels have none (failed, ``invalid_labels``). A null cell
    takes the shared groups (the engine's rule); labels the engine refuses anyway are left to it."""
    groups: list[Groups | None] = []
    problems: list[RowOutcome | None] = []
    seen: dict[Any, Groups | RowOutcome | None] = {}
    for labels in row_labels:
        if is_missing(labels):
            found: Groups | RowOutcome | None = shared or ()
        else:
            key = row_labels_key(labels)
            cached = None if isinstance(key, RowOutcome) else _cache_key(key)
            if cached is None or cached not in seen:
                found = _one_row(key)
                if cached is not None:
                    seen[cached] = found
            else:
                found = seen[cached]
        groups.append(None if isinstance(found, RowOutcome) else found)
        problems.append(found if isinstance(found, RowOutcome) else None)
    return groups, problems


def _one_row(labels: Any) -> Groups | RowOutcome | None:
    if isinstance(labels, RowOutcome):
        return None
    if not isinstance(labels, Taxonomy) and not labels:
        return ()
    try:
        return groups_of(list(labels) if isinstance(labels, tuple) else labels)
    except ConfigError as exc:
        return RowOutcome.failed(f"invalid labels: {exc}", "invalid_labels")
    except RecursionError:
        return None


def nest(result: list[dict[str, Any]] | None, groups: Groups | None) -> dict[str, dict[str, float]] | None:
    """One row's scores nested by group (a missing score is 0.0, as in the reference)."""
    if result is None or groups is None:
        return None
    scores = {item["label"]: item["score"] for item in result}
    out: dict[str, dict[str, float]] = {}
    for path, name, flat in groups:
        out.setdefault(path, {})[name] = scores.get(flat, 0.0)
    return out
