"""Table formats for results: Delta Lake (``deltalake``, the ``delta`` extra), each with its own atomic
commits. The table libraries are imported inside functions, so the core stays light."""

from __future__ import annotations

OUTPUT_FORMATS = ("parquet", "delta")
