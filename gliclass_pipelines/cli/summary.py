"""What a run did: printed at the end and written into _SUCCESS.

rows/s is one number everywhere (the progress line and the summary): rows divided by the seconds since
the job started, model load and Spark or Beam start-up included.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from gliclass_pipelines._common.redaction import redact
from gliclass_pipelines.io.output import part_files

logger = logging.getLogger(__name__)


@dataclass
class Summary:
    """What a run did, printed at the end and written into _SUCCESS."""

    runner: str
    output: str
    model: str = ""
    rows: int = 0
    null_inputs: int = 0
    truncated: int | None = 0
    failed: int = 0
    bad_records: int = 0
    seconds: float = 0.0
    model_loads: int | None = None  # None: the runner reported no statistics (Spark Connect, say)
    model_load_seconds: float | None = None
    parts: int = 0
    provenance: dict[str, Any] | None = None
    incremental: dict[str, int] | None = None  # skipped, new, changed, deleted
    table_metrics: dict[str, Any] | None = None
    tracker: Any = field(default=None, repr=False)  # the incremental run's io.incremental.Tracker
    started: float = field(default_factory=time.perf_counter, repr=False)

    def __post_init__(self) -> None:
        self.model = redact(self.model)

    @property
    def rows_per_second(self) -> float:
        """Rows over the seconds since the job started (model load and engine start-up included)."""
        return rows_per_second(self.rows, self.seconds)

    def add(self, stats: Any) -> None:
        """Add an engine statistics record (RunStats) to the counts, its model loads included."""
        self.model_loads = (self.model_loads or 0) + stats.model_loads
        self.model_load_seconds = (self.model_load_seconds or 0.0) + stats.model_load_seconds
        self.rows += stats.rows
        self.null_inputs += stats.null_inputs
        self.failed += stats.failed
        if self.truncated is not None:
            self.truncated += stats.truncated

    def to_json(self) -> str:
        optional = ("provenance", "incremental", "table_metrics")
        record = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in ("started", "tracker")
            and not (f.name in optional and getattr(self, f.name) is None)
        }
        return json.dumps({**record, "rows_per_second": round(self.rows_per_second, 2)}, indent=2)

    def lines(self) -> list[str]:
        def show(value: Any) -> str:
            return "n/a" if value is None else str(value)

        load = "n/a"
        if self.model_loads is not None:
            plural = "" if self.model_loads == 1 else "s"
            load = f"{self.model_loads} load{plural}, {self.model_load_seconds or 0.0:.1f}s"
        return [
            f"gliclass-pipelines: done with the {self.runner} runner in {self.seconds:.1f}s",
            f"  rows          {self.rows}",
            f"  rows/s        {self.rows_per_second:.1f} (over the whole run, model load included)",
            f"  null inputs   {self.null_inputs}",
            f"  truncated     {show(self.truncated)}",
            f"  failed        {self.failed}",
            f"  bad records   {self.bad_records}",
            f"  model load    {load}",
            f"  output        {self.output} ({self.parts} part file{'s' if self.parts != 1 else ''})",
            *self._more_lines(),
        ]

    def _more_lines(self) -> list[str]:
        lines = []
        if self.provenance is not None:
            lines.append(f"  fingerprint   {self.provenance['fingerprint']}")
        if self.incremental is not None:
            counts = ", ".join(f"{k} {v}" for k, v in self.incremental.items())
            lines.append(f"  incremental   classified {self.rows}, {counts}")
        return lines


def rows_per_second(rows: int, seconds: float) -> float:
    return rows / seconds if seconds > 0 else 0.0


def stats_from_output(job: Any, directory: Path, summary: Summary) -> None:
    """Rows, null inputs and failed rows, counted in the written parts (for engines that run elsewhere)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    for path in part_files(directory):
        handle = pq.ParquetFile(path)
        for batch in handle.iter_batches(columns=[job.text_column, job.result_column]):
            text, result = batch.column(0), batch.column(1)
            blank = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(text.cast("string")), ""), True)
            summary.rows += batch.num_rows
            summary.null_inputs += pc.sum(blank).as_py() or 0
            summary.failed += pc.sum(pc.and_(pc.invert(blank), pc.is_null(result))).as_py() or 0


def written_rows(directory: Path) -> int:
    """Rows in the written parts, from their footers."""
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(path).metadata.num_rows for path in part_files(directory))


def add_computed(summary: Summary, stats: Any, written: int) -> None:
    """Spark's or Beam's statistics (what was computed) for the rows written."""
    summary.add(stats)
    if summary.rows != written:
        logger.warning(
            "the runner computed %d rows for the %d written (tasks run again count twice); "
            "the counts are of computed rows",
            summary.rows,
            written,
        )
        summary.rows = written
