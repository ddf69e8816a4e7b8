"""Run GLiClass zero-shot text classifiers inside Spark, Beam and scheduled ETL jobs.

Importing this package is cheap: torch, pyspark and apache_beam load only when a module that needs
them is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gliclass_pipelines.errors import (
    ConfigError,
    GLiClassPipelinesError,
    ModelLoadError,
    UnsupportedModelError,
)
from gliclass_pipelines.taxonomy.taxonomy import Taxonomy

__version__ = "0.1.0"

__all__ = [
    "ClassifyConfig",
    "Classifier",
    "ConfigError",
    "GLiClassPipelinesError",
    "ModelLoadError",
    "RunStats",
    "Taxonomy",
    "UnsupportedModelError",
    "__version__",
]

if TYPE_CHECKING:
    from gliclass_pipelines.core.classifier import Classifier
    from gliclass_pipelines.core.config import ClassifyConfig
    from gliclass_pipelines.core.outcomes import RunStats

_LAZY = {
    "Classifier": "gliclass_pipelines.core.classifier",  # torch
    "ClassifyConfig": "gliclass_pipelines.core.config",  # numpy
    "RunStats": "gliclass_pipelines.core.outcomes",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gliclass_pipelines' has no attribute {name!r}")
