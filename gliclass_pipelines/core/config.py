"""One frozen, validated description of a classification job, shared by Spark, Beam and the CLI.

It is built and checked on the driver or launcher (no model is loaded there), shipped to workers by
pickling, and turned into results on the worker with :meth:`ClassifyConfig.classify`.
"""

from __future__ import annotations

import logging
import numbers
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from gliclass_pipelines._common.checks import DEFAULT_THRESHOLD, check_positive_int, check_threshold
from gliclass_pipelines._common.redaction import redact
from gliclass_pipelines.core.encoding import LONG_TEXT_POLICIES
from gliclass_pipelines.core.hierarchy import groups_of, row_groups
from gliclass_pipelines.core.label_plan import refuse_per_text
from gliclass_pipelines.core.per_text import row_options
from gliclass_pipelines.core.results import check_output, needs_all_labels, shape
from gliclass_pipelines.errors import ConfigError
from gliclass_pipelines.model.int8 import check_precision
from gliclass_pipelines.model.sources import ModelSource, check_device, check_dtype
from gliclass_pipelines.taxonomy.taxonomy import Taxonomy

logger = logging.getLogger(__name__)

RUN_OPTIONS = ("chunk_overlap", "max_batch_rows", "prompt", "examples")  # passed on to Classifier.run


@dataclass(frozen=True, repr=False)
class ClassifyConfig:
    """What to run: the model, the labels (shared, or per row) and how to shape the output."""

    model: str
    labels: Any = None  # a Taxonomy, a list of labels, a hierarchy; None for per-row labels only
    per_row_labels: bool = False
    threshold: float = DEFAULT_THRESHOLD
    multi_label: bool = True
    output: str = "labels"
    device: str = "auto"
    dtype: str = "auto"
    long_text: str = "truncate"
    batch_tokens: int | None = None
    max_length: int | None = None
    num_threads: int | None = None
    precision: str = "float32"  # "int8": the encoder quantized for CPU (gliclass_pipelines.model.int8)
    options: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        ModelSource.parse(self.model)
        if self.labels is None and not self.per_row_labels:
            raise ConfigError("give labels (a list, a hierarchy or a Taxonomy) or a per-row labels column")
        if self.labels is not None:
            refuse_per_text(self.labels, "the job's shared labels")
            object.__setattr__(self, "labels", Taxonomy.coerce(self.labels))
        check_threshold(self.threshold)
        check_output(self.output)
        if self.output == "hierarchical" and self.labels is not None:
            object.__setattr__(self, "_shared_groups", groups_of(self.labels))
        object.__setattr__(self, "device", check_device(self.device))
        object.__setattr__(self, "dtype", check_dtype(self.dtype))
        object.__setattr__(self, "precision", check_precision(self.precision, self.device, self.dtype))
        if self.long_text not in LONG_TEXT_POLICIES:
            raise ConfigError(f"long_text must be one of {LONG_TEXT_POLICIES}, got {self.long_text!r}")
        for name in ("batch_tokens", "max_length", "num_threads"):
            check_positive_int(getattr(self, name), name)
        if not isinstance(self.multi_label, bool):
            raise ConfigError(f"multi_label must be True or False, got {self.multi_label!r}")
        _check_options(self.options)

    @classmethod
    def from_settings(
        cls, model: str | os.PathLike[str], labels: Any = None, *, options: Any = None, **settings: Any
    ) -> ClassifyConfig:
        """The config for keyword settings: every field by name, and Classifier.run options by name
        (or in ``options``). Every keyword facade (Spark, Beam, the CLI) builds its config here.

        Raises ConfigError naming any keyword that is neither a setting nor an option.
        """
        merged = dict(options) if isinstance(options, Mapping) else options
        known = {f.name for f in fields(cls)} - {"model", "labels", "options"}
        unknown = sorted(k for k in settings if k not in known and k not in RUN_OPTIONS)
        if unknown:
            raise ConfigError(
                f"unknown setting(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known | set(RUN_OPTIONS)))}"
            )
        if merged is None:
            merged = {}
        if isinstance(merged, dict):
            merged.update({k: settings.pop(k) for k in list(settings) if k in RUN_OPTIONS})
        model = os.fspath(model) if isinstance(model, os.PathLike) else model
        return cls(model=model, labels=labels, options=merged, **settings)

    def __repr__(self) -> str:
        parts = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))
        return redact(f"ClassifyConfig({parts})")

    def with_(self, **changes: Any) -> ClassifyConfig:
        return replace(self, **changes)

    def fingerprint(self) -> str:
        """A short, stable hash of what decides this job's results: the model's resolved revision, the
        taxonomy and output settings, precision and backend, and the package and gliclass versions
        (:mod:`gliclass_pipelines.core.fingerprint`). The same on the driver and on every worker."""
        return self.provenance()["fingerprint"]

    def provenance(self) -> dict[str, Any]:
        """What produced this job's results (the model redacted), with its :meth:`fingerprint`."""
        from gliclass_pipelines.core.fingerprint import provenance

        return provenance(self)

    def classifier(self, engine_device: str | None = None) -> Any:
        """The process-wide model for this job, loaded on first use (on the worker)."""
        from gliclass_pipelines.core.classifier import Classifier

        return Classifier.load(
            self.model,
            device=self.device,
            dtype=self.dtype,
            engine_device=engine_device,
            max_length=self.max_length,
            num_threads=self.num_threads,
            precision=self.precision,
        )

    def classify(
        self,
        texts: Sequence[Any],
        row_labels: Sequence[Any] | None = None,
        engine_device: str | None = None,
        classifier: Any = None,
        *,
        row_prompts: Sequence[Any] | None = None,
        row_thresholds: Sequence[Any] | None = None,
    ) -> tuple[list[Any], Any]:
        """Shaped records for `texts`, and the classifier's Output (row outcomes, RunStats).

        `row_labels` gives each row its own labels; a row whose labels are null takes the job's shared
        labels (the engine's rule). `row_prompts` and `row_thresholds` give each row its own task prompt
        and threshold (the reference's per-text ``prompt`` and ``threshold``); a null cell takes the job's,
        and an unusable one fails its row. `classifier` is an already loaded model (Beam hands one in); by
        default the registry's. Failed rows are not logged here: the adapter that knows their position
        or id logs them once.
        """
        rows = self._rows(texts, row_labels)
        options = dict(self.options, threshold=self.threshold)
        problems = None
        if row_prompts is not None or row_thresholds is not None:
            each = row_options(len(texts), row_prompts, row_thresholds, options.get("prompt"), self.threshold)
            options.update(prompt=each.prompt, threshold=each.threshold)
            problems = each.problems
        groups, problems = self._groups(len(texts), rows, problems)
        if classifier is None:
            classifier = self.classifier(engine_device)
        out = classifier.run(
            texts,
            self.labels,
            row_labels=rows,
            multi_label=self.multi_label,
            return_all=needs_all_labels(self.output),
            long_text=self.long_text,
            batch_tokens=self.batch_tokens,
            row_problems=problems,
            **options,
        )
        return shape(out.results, self.output, groups), out

    def _groups(
        self, n: int, rows: list[Any] | None, problems: list[Any] | None
    ) -> tuple[list[Any] | None, list[Any] | None]:
        """Each row's groups for output="hierarchical" (else None), and the rows that fail for want of
        groups added to `problems`."""
        if self.output != "hierarchical":
            return None, problems
        shared = getattr(self, "_shared_groups", None)
        if rows is None:
            return [shared] * n, problems
        groups, missing = row_groups(rows, shared)
        if problems is None:
            return groups, missing if any(missing) else None
        return groups, [p or m for p, m in zip(problems, missing)]

    def _rows(self, texts: Sequence[Any], row_labels: Sequence[Any] | None) -> list[Any] | None:
        if row_labels is None:
            if self.labels is None:
                raise ConfigError("this job classifies with per-row labels, but none were given")
            return None
        rows = list(row_labels)  # each cell is judged by the engine: a set is a failed row, never sorted
        if len(rows) != len(texts):
            raise ConfigError(f"got {len(rows)} label lists for {len(texts)} texts")
        return rows


def _check_options(options: Any) -> None:
    """The options passed on to Classifier.run, checked here so a bad one fails before any worker starts."""
    if not isinstance(options, Mapping):
        raise ConfigError(f"options must be a mapping of option -> value, got {type(options).__name__}")
    unknown = sorted(str(key) for key in options if key not in RUN_OPTIONS)
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(RUN_OPTIONS)}")
    for name, low in (("chunk_overlap", 0), ("max_batch_rows", 1)):
        value = options.get(name, low)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    if options.get("prompt") is not None or options.get("examples") is not None:
        Taxonomy.from_labels(["x"], prompt=options.get("prompt"), examples=options.get("examples"))
