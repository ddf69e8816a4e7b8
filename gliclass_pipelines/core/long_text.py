"""Long texts under ``long_text="chunk"``: overlapping windows, streamed for very long texts, and a cap.

A text longer than :data:`STREAM_CHARS` is tokenized in pieces of about :data:`PIECE_CHARS` characters,
each cut just before a space that ends a word, and its windows are handed on a few at a time, so memory
is bounded by a piece and a window batch, not by the text. Cut there, the pieces' token ids join into the
whole text's for tokenizers that split words at spaces (WordPiece, byte-level BPE, SentencePiece's
metaspace, with or without a prefix space; a cut before a newline or a tab would give those last two an
extra token); shorter texts are tokenized whole, as before. A text longer than :func:`max_chunk_chars`
(``$GLICLASS_PIPELINES_MAX_CHUNK_CHARS``) is a failed row: its thousands of windows would hold a worker
for many minutes. Standard library only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

from gliclass_pipelines.core.outcomes import RowOutcome
from gliclass_pipelines.errors import ConfigError

MAX_CHUNK_CHARS_ENV = "GLICLASS_PIPELINES_MAX_CHUNK_CHARS"
DEFAULT_MAX_CHUNK_CHARS = 10_000_000  # ~2.5M tokens, ~5,000 windows of 512 tokens
STREAM_CHARS = 100_000  # longer texts are tokenized in pieces and their windows streamed
PIECE_CHARS = 32_768
WINDOW_BATCH = 64  # windows handed to the model at a time

_WORD_END = re.compile(r"\S(?= )")
_WORD_END_ANY = re.compile(r"\S(?=\s)")


def max_chunk_chars() -> int:
    """The most characters a text may have under long_text="chunk" ($GLICLASS_PIPELINES_MAX_CHUNK_CHARS)."""
    raw = os.environ.get(MAX_CHUNK_CHARS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_CHUNK_CHARS
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"{MAX_CHUNK_CHARS_ENV} must be a positive integer, got {raw[:40]!r}")
    return int(raw)


def chunk_problem(text: Any, long_text: str, limit: int) -> RowOutcome | None:
    """A failed outcome for a text too long to chunk, else None."""
    if long_text != "chunk" or not isinstance(text, str) or len(text) <= limit:
        return None
    reason = (
        f"text has {len(text):,} characters, more than the {limit:,} that long_text='chunk' classifies; "
        f"split it, use long_text='truncate' (classifies its start), or raise {MAX_CHUNK_CHARS_ENV}"
    )
    return RowOutcome.failed(reason, "text_too_long")


def text_pieces(text: str, size: int | None = None) -> Iterator[str]:
    """Consecutive pieces of `text` of at most `size` (PIECE_CHARS) characters, each after the first
    starting with the space it was cut before; where the second half of a piece has no word followed by
    a space, with the other whitespace, and where it has none, at `size`."""
    size = size or PIECE_CHARS
    start = 0
    while len(text) - start > size:
        end = start + size
        end = (
            _last_word_end(text, start + size // 2, end, _WORD_END)
            or _last_word_end(text, start + size // 2, end, _WORD_END_ANY)
            or end
        )
        yield text[start:end]
        start = end
    yield text[start:]


def _last_word_end(text: str, begin: int, end: int, pattern: re.Pattern[str]) -> int | None:
    return max((word.end() for word in pattern.finditer(text, begin, end + 1)), default=None)


class Windows:
    """Windows of `size` tokens over ids fed in pieces, each overlapping the previous by up to `overlap`.

    Fed a whole text at once, it gives what it gives fed the same ids in any pieces.
    """

    def __init__(self, size: int, overlap: int) -> None:
        self.size = size
        self.step = max(1, size - min(overlap, size // 2))
        self.buffer: list[int] = []

    def feed(self, ids: list[int]) -> list[list[int]]:
        """The windows that are complete, and not the last, once `ids` are added."""
        self.buffer.extend(ids)
        windows, start = [], 0
        while len(self.buffer) - start > self.size:
            windows.append(self.buffer[start : start + self.size])
            start += self.step
        del self.buffer[:start]
        return windows

    def finish(self) -> list[int]:
        """The last window: what is left once every id was fed."""
        return self.buffer


def windows_of(ids: list[int], size: int, overlap: int) -> list[list[int]]:
    """Windows of `size` tokens covering `ids`, each overlapping the previous by up to `overlap`."""
    windows = Windows(size, overlap)
    return [*windows.feed(ids), windows.finish()]
