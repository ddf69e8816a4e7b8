"""What to classify into: :class:`Taxonomy` (labels, thresholds, prompt, examples) and its label rules."""

from gliclass_pipelines.taxonomy.labels import (
    EXAMPLE_MARK,
    LABEL_MARK,
    MARKERS,
    MAX_LABELS_ENV,
    SEP_MARK,
    flatten_labels,
    max_labels,
    normalize_label,
)
from gliclass_pipelines.taxonomy.rules import Example
from gliclass_pipelines.taxonomy.taxonomy import Taxonomy

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
