"""One small exception hierarchy: every error the library raises on purpose is a GLiClassPipelinesError."""

from __future__ import annotations


class GLiClassPipelinesError(Exception):
    """Base class of the errors this library raises."""


class ConfigError(GLiClassPipelinesError, ValueError):
    """Invalid configuration: a taxonomy, an option or a model source that cannot work."""


class ModelLoadError(GLiClassPipelinesError, RuntimeError):
    """A model could not be found, copied or loaded. The message names the source and the fix."""


class UnsupportedModelError(ModelLoadError):
    """The checkpoint loads in the reference package, but this library does not run its architecture."""
