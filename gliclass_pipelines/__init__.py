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
from gliclass_pipelines.taxonomy import Taxonomy

__version__ = "0.1.0"

__all__ = [
    "Classifier",
    "ConfigError",
    "GLiClassPipelinesError",
    "ModelLoadError",
    "Taxonomy",
    "UnsupportedModelError",
    "__version__",
]

if TYPE_CHECKING:
    from gliclass_pipelines.engine import Classifier


def __getattr__(name: str) -> Any:
    if name == "Classifier":
        from gliclass_pipelines.engine import Classifier

        return Classifier
    raise AttributeError(f"module 'gliclass_pipelines' has no attribute {name!r}")
