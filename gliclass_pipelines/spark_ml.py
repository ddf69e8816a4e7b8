"""Pipelines saved before the package was divided into folders name this module; new code imports
:mod:`gliclass_pipelines.spark.ml`."""

from gliclass_pipelines.spark.ml import GLiClassTransformer

__all__ = ["GLiClassTransformer"]
