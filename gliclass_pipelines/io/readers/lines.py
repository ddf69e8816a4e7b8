"""Reading a (compressed) file as bounded lines: no line, and no run of blank lines, grows without bound."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gliclass_pipelines._common.redaction import shorten
from gliclass_pipelines.errors import ConfigError

COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd", ".lz4": "lz4"}
MAX_RECORD_BYTES = 32 << 20  # a longer line or field is a failed row, read past and never held whole
MAX_BLANK_LINES = 1_000_000  # blank lines in a row: past this the file is refused (a newline bomb)


@contextlib.contextmanager
def open_stream(path: Path) -> Iterator[tuple[Any, Any]]:
    """The file's (decompressed) bytes as a buffered stream, and the raw file (its position)."""
    import pyarrow as pa

    with open(path, "rb") as raw:
        codec = COMPRESSIONS.get(path.suffix.lower())
        stream = pa.CompressedInputStream(raw, codec) if codec else raw
        yield (io.BufferedReader(stream) if codec else stream), raw


def too_long() -> str:
    return f"longer than {MAX_RECORD_BYTES:,} bytes; read past, not parsed"


@dataclass(frozen=True)
class CutLine:
    """A line longer than MAX_RECORD_BYTES, read past in pieces and never held whole."""

    quotes: int  # how many '"' it held: CSV needs their parity to stay in step


def bounded_lines(stream: Any, path: Path | None = None) -> Iterator[Any]:
    """The lines of a binary stream (split at \\n) or of a text one (split as it splits them), each at most
    MAX_RECORD_BYTES long (characters, for text); a longer one comes as a CutLine. More than
    MAX_BLANK_LINES blank lines in a row raise ConfigError."""
    text = isinstance(stream, io.TextIOBase)
    ends, quote = (("\n", "\r"), '"') if text else (b"\n", b'"')
    blank, number = 0, 0
    while line := stream.readline(MAX_RECORD_BYTES + 1):
        number += 1
        if len(line) <= MAX_RECORD_BYTES or line.endswith(ends):
            blank = blank + 1 if not line.strip() else 0
            if blank > MAX_BLANK_LINES:
                raise ConfigError(blank_lines_reason(path, number - blank + 1))
            yield line
            continue
        blank = 0
        quotes = line.count(quote)
        while (rest := stream.readline(1 << 20)) and not rest.endswith(ends):
            quotes += rest.count(quote)
        yield CutLine(quotes + rest.count(quote))


def blank_lines_reason(path: Path | None, first: int | None) -> str:
    where = shorten(str(path)) if path is not None else "a JSON lines input"
    where += f" line {first:,}" if first is not None else ""
    return (
        f"{where}: more than {MAX_BLANK_LINES:,} blank lines in a row (a newline bomb or a damaged file); "
        "remove the blank lines"
    )
