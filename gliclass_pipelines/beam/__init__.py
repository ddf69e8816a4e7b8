"""Public names of gliclass_pipelines.beam; they live in gliclass_pipelines.beam.transforms."""

from gliclass_pipelines.beam.transforms import (  # noqa: F401
    BEAM_ARGS,
    DEAD_LETTERS,
    Classified,
    ClassifyText,
    ElementError,
    Failed,
    GLiClassDoFn,
    GLiClassModelHandler,
    dead_letter,
    dead_letter_count,
    run_stats,
)

__all__ = [
    "BEAM_ARGS",
    "DEAD_LETTERS",
    "Classified",
    "ClassifyText",
    "ElementError",
    "Failed",
    "GLiClassDoFn",
    "GLiClassModelHandler",
    "dead_letter",
    "dead_letter_count",
    "run_stats",
]
