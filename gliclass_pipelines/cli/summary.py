"""What a run did: printed at the end and written into _SUCCESS."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gliclass_pipelines.cli.output import part_files


@dataclass
class Summary:
    """What a run did, printed at the end and written into _SUCCESS."""

    engine: str
    output: str
    rows: int = 0
    null_inputs: int = 0
    truncated: int | None = 0
    failed: int = 0
    seconds: float = 0.0
    model_load_seconds: float | None = None
    parts: int = 0

    @property
    def rows_per_second(self) -> float:
        """Classification throughput: the model's load time, when known, does not count."""
        busy = self.seconds - (self.model_load_seconds or 0.0)
        return self.rows / busy if busy > 0 else 0.0

    def add(self, stats: Counter) -> None:
        self.rows += stats.get("rows", 0)
        self.null_inputs += stats.get("null_inputs", 0)
        self.failed += stats.get("failed", 0)
        if self.truncated is not None:
            self.truncated += stats.get("truncated", 0)

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "rows_per_second": round(self.rows_per_second, 2)}, indent=2)

    def lines(self) -> list[str]:
        def show(value: Any) -> str:
            return "n/a" if value is None else str(value)

        load = "n/a" if self.model_load_seconds is None else f"{self.model_load_seconds:.1f}s"
        return [
            f"gliclass-pipelines: done with the {self.engine} engine in {self.seconds:.1f}s",
            f"  rows          {self.rows}",
            f"  rows/s        {self.rows_per_second:.1f}",
            f"  null inputs   {self.null_inputs}",
            f"  truncated     {show(self.truncated)}",
            f"  failed        {self.failed}",
            f"  model load    {load}",
            f"  output        {self.output} ({self.parts} part file{'s' if self.parts != 1 else ''})",
        ]


def stats_from_output(job: Any, directory: Path) -> Summary:
    """Rows, null inputs and failed rows, counted in the written parts (for engines that run elsewhere)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    summary = Summary(engine=job.engine, output=str(job.output), model_load_seconds=None)
    for path in part_files(directory):
        handle = pq.ParquetFile(path)
        for batch in handle.iter_batches(columns=[job.text_column, job.result_column]):
            text, result = batch.column(0), batch.column(1)
            blank = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(text.cast("string")), ""), True)
            summary.rows += batch.num_rows
            summary.null_inputs += pc.sum(blank).as_py() or 0
            summary.failed += pc.sum(pc.and_(pc.invert(blank), pc.is_null(result))).as_py() or 0
    return summary
