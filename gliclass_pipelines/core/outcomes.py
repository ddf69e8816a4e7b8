"""What happened to each row of a run, and the counts every adapter reports.

A row's outcome is typed: ``ok`` (it has a result), ``null_input`` (a null or blank text: a null result,
expected) or ``failed`` (a null result because the row is unusable, with the reason). Spark, Beam and the
CLI read the same :class:`RunStats`, so their counts agree by construction.
"""

from __future__ import annotations

import logging
import numbers
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

logger = logging.getLogger(__name__)

OK, NULL_INPUT, FAILED = "ok", "null_input", "failed"
KINDS = (OK, NULL_INPUT, FAILED)


@dataclass(frozen=True)
class RowOutcome:
    """One row's outcome: its kind, why it has no result (None when ok), and a short counter name."""

    kind: str
    reason: str | None = None
    code: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"a row outcome is one of {KINDS}, got {self.kind!r}")
        if (self.kind == OK) != (self.reason is None):
            raise ValueError("an ok row has no reason; a null_input or failed row has one")
        if self.kind != OK and self.code is None:
            object.__setattr__(self, "code", self.kind)

    @classmethod
    def ok(cls) -> RowOutcome:
        return _OK

    @classmethod
    def null_input(cls, reason: str, code: str | None = None) -> RowOutcome:
        return cls(NULL_INPUT, reason, code)

    @classmethod
    def failed(cls, reason: str, code: str | None = None) -> RowOutcome:
        return cls(FAILED, reason, code)

    @property
    def is_ok(self) -> bool:
        return self.kind == OK

    @property
    def is_null_input(self) -> bool:
        return self.kind == NULL_INPUT

    @property
    def is_failed(self) -> bool:
        return self.kind == FAILED


_OK = RowOutcome(OK)


def is_missing(value: Any) -> bool:
    """None, a float NaN (numpy's too), or pandas' NA / NaT: a null input, whichever library made it."""
    if value is None or isinstance(value, str):
        return value is None
    pandas = sys.modules.get("pandas")  # loaded by whoever made a pandas value; never imported here
    if pandas is not None and (value is pandas.NA or value is pandas.NaT):
        return True
    return isinstance(value, numbers.Real) and value != value


@dataclass(eq=True)
class RunStats(Mapping):
    """Counts of one run (or of many, with :meth:`add`).

    Read it by attribute; it is also a read-only mapping of its integer counters (``stats["rows"]``),
    which is what metric systems want. ``reasons`` counts null and failed rows by their outcome's code.
    ``model_loads`` counts the models loaded (a process's registry hit is no load), and
    ``model_load_seconds`` (not a counter: a float) sums their load times.
    """

    rows: int = 0
    ok: int = 0
    null_inputs: int = 0
    failed: int = 0
    truncated: int = 0
    duplicates: int = 0
    sequences: int = 0
    batches: int = 0
    real_tokens: int = 0
    padded_tokens: int = 0
    oom_splits: int = 0
    model_loads: int = 0
    model_load_seconds: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)

    COUNTERS: ClassVar[tuple[str, ...]] = (
        "rows",
        "ok",
        "null_inputs",
        "failed",
        "truncated",
        "duplicates",
        "sequences",
        "batches",
        "real_tokens",
        "padded_tokens",
        "oom_splits",
        "model_loads",
    )
    __hash__ = None  # type: ignore[assignment]

    def count(self, outcome: RowOutcome, truncated: bool = False) -> None:
        """Count one row."""
        self.rows += 1
        self.truncated += bool(truncated)
        if outcome.is_ok:
            self.ok += 1
            return
        if outcome.is_null_input:
            self.null_inputs += 1
        else:
            self.failed += 1
        self.reasons[outcome.code] = self.reasons.get(outcome.code, 0) + 1

    def add(self, other: RunStats) -> RunStats:
        """Add another run's counts to these (in place); returns self."""
        for name in self.COUNTERS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.model_load_seconds += other.model_load_seconds
        for code, n in other.reasons.items():
            self.reasons[code] = self.reasons.get(code, 0) + n
        return self

    @property
    def padding_efficiency(self) -> float:
        """Real tokens over padded tokens forwarded (1.0: no padding)."""
        return self.real_tokens / self.padded_tokens if self.padded_tokens else 1.0

    def as_dict(self) -> dict[str, Any]:
        counters = {name: getattr(self, name) for name in self.COUNTERS}
        return {**counters, "model_load_seconds": self.model_load_seconds, "reasons": dict(self.reasons)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunStats:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown run statistics: {unknown}")
        values: dict[str, Any] = {k: int(v) for k, v in data.items() if k in cls.COUNTERS}
        values["model_load_seconds"] = float(data.get("model_load_seconds", 0.0))
        return cls(**values, reasons={str(k): int(v) for k, v in dict(data.get("reasons") or {}).items()})

    def __getitem__(self, name: str) -> int:
        if name not in self.COUNTERS:
            raise KeyError(name)
        return getattr(self, name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.COUNTERS)

    def __len__(self) -> int:
        return len(self.COUNTERS)


class LoadReport:
    """One model load, reported once: the first :meth:`take` returns it as RunStats (``model_loads`` 1 and
    its seconds), every later one nothing. A model a process loaded once is so counted once, by whichever
    of the tasks sharing it classifies first; a model that was not loaded (built from objects) has none."""

    def __init__(self, seconds: float | None = None) -> None:
        self._lock = threading.Lock()
        self._seconds = seconds

    def take(self) -> RunStats:
        with self._lock:
            seconds, self._seconds = self._seconds, None
        return RunStats() if seconds is None else RunStats(model_loads=1, model_load_seconds=seconds)


@dataclass
class Output:
    """What one classify call produced: one result, one truncation flag and one outcome per input."""

    results: list[list[dict[str, Any]] | None]
    truncated: list[bool]
    outcomes: list[RowOutcome]
    stats: RunStats


def log_failed(
    outcomes: Sequence[RowOutcome], *, offset: int = 0, ids: Sequence[Any] | None = None, limit: int = 5
) -> int:
    """Log failed rows (the first `limit`, then how many more); null inputs are expected and not logged.

    Returns how many rows failed. Call it once per run, in the one place that knows the rows' ids.
    """
    failed = [i for i, o in enumerate(outcomes) if o.is_failed]
    for i in failed[:limit]:
        where = f"row {offset + i}" + (f" (id {ids[i]!r})" if ids is not None else "")
        logger.warning("%s has a null result: %s", where, outcomes[i].reason)
    if len(failed) > limit:
        logger.warning("... and %d more rows with a null result", len(failed) - limit)
    return len(failed)
