"""Public names of gliclass_pipelines.testing; they live in gliclass_pipelines.testing.checkpoints."""

from gliclass_pipelines.testing.checkpoints import (  # noqa: F401
    ARCHITECTURES,
    BACKBONES,
    POOLINGS,
    SCORERS,
    VARIANTS,
    make_tiny_checkpoint,
    variant_id,
)

__all__ = [
    "ARCHITECTURES",
    "BACKBONES",
    "POOLINGS",
    "SCORERS",
    "VARIANTS",
    "make_tiny_checkpoint",
    "variant_id",
]
