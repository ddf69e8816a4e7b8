"""What the Spark and Beam runners share: the driver-side model check and their errors, made short."""

from __future__ import annotations

import re
from typing import Any

from gliclass_pipelines._common.redaction import shorten
from gliclass_pipelines.errors import GLiClassPipelinesError


class RunnerError(GLiClassPipelinesError):
    """Spark or Beam failed; the message is their error, without its long traceback."""


def check_model_early(job: Any) -> None:
    """Fetch the model here, on the driver or launcher, whatever the runner, so a bad model fails with one
    clear message before Spark or Beam start work (on a cluster it failed in every task attempt)."""
    from gliclass_pipelines.model.sources import ModelSource

    ModelSource.parse(job.config.model).fetch()


def short_error(exc: BaseException) -> str:
    """The last 'SomethingError: message' line of an engine's error (Spark and Beam wrap tracebacks)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    named = [line for line in lines if re.match(r"^[\w.]+(Error|Exception): ", line)]
    text = named[-1] if named else (lines[-1] if lines else type(exc).__name__)
    return shorten(text, 2000)
