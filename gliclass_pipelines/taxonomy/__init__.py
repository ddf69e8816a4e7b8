"""Public names of gliclass_pipelines.taxonomy; they live in gliclass_pipelines.taxonomy.taxonomy."""

from gliclass_pipelines.taxonomy.taxonomy import (  # noqa: F401
    EXAMPLE_MARK,
    LABEL_MARK,
    MARKERS,
    MAX_LABELS_ENV,
    SEP_MARK,
    Example,
    Taxonomy,
    flatten_labels,
    max_labels,
    normalize_label,
)

__all__ = [
    "EXAMPLE_MARK",
    "LABEL_MARK",
    "MARKERS",
    "MAX_LABELS_ENV",
    "SEP_MARK",
    "Example",
    "Taxonomy",
    "flatten_labels",
    "max_labels",
    "normalize_label",
]
