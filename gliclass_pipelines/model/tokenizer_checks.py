"""Checks that a checkpoint's tokenizer belongs to its model: sizes, token ids, marker tokens, a probe.

Before loading, the tokenizer files may hold at most :data:`BASE_BYTES` plus :data:`BYTES_PER_ROW` per row
of the embedding matrix the config declares (real tokenizers need under 150 bytes a row), so a vocabulary
of millions of entries is refused before it is parsed, and tokenizer.json's ids (read as JSON) must fit
that matrix. After loading: every id the tokenizer can give fits the embedding matrix; a uni-encoder's
``<<LABEL>>`` and ``<<SEP>>`` (and, when the model reads them for its segment embeddings, ``<<EXAMPLE>>``)
are single tokens whose ids are the config's indices; and the tokenizer gets through :data:`PROBE_TEXTS`
(long runs that make a backtracking pre-tokenizer regex panic or crawl) within :data:`PROBE_SECONDS`.
"""

from __future__ import annotations

import json
import string
import threading
from pathlib import Path
from typing import Any

from gliclass_pipelines._common.redaction import shorten
from gliclass_pipelines.errors import ModelLoadError
from gliclass_pipelines.taxonomy.labels import EXAMPLE_MARK, LABEL_MARK, SEP_MARK

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
)
BASE_BYTES = 1024 * 1024
BYTES_PER_ROW = 512
PROBE_SECONDS = 10.0
_RUN_CHARACTERS = string.ascii_letters + string.digits + string.punctuation + " \u00e9\u4e2d"
PROBE_TEXTS = (
    "A probe text: plain words, punctuation; digits 0123456789, UPPER and lower case.",
    f"{LABEL_MARK}sports{LABEL_MARK}science{SEP_MARK}A text.",
    "Scripts and emoji: \u00e9t\u00e9, \u00fcber, \u4e2d\u6587, \u0639\u0631\u0628\u064a, \U0001f600.",
    *(c * 200 + ("!" if c != "!" else "?") for c in _RUN_CHARACTERS),  # bait for backtracking regexes
)


def is_tokenizer_failure(exc: BaseException) -> bool:
    """Whether a tokenizer call failed on its input: any Exception, or a panic in the Rust tokenizers
    (pyo3's PanicException derives from BaseException), never an interrupt or an exit."""
    return isinstance(exc, Exception) or type(exc).__name__ == "PanicException"


def check_tokenizer_files(directory: Path, rows: int | None, name: str) -> None:
    """Refuse tokenizer files larger than a vocabulary for `rows` embedding rows can need."""
    if rows is None:
        return
    files = [directory / f for f in TOKENIZER_FILES] + sorted(directory.glob("*.model"))
    sizes = {f.name: f.stat().st_size for f in files if f.is_file()}
    limit = BASE_BYTES + BYTES_PER_ROW * rows
    if sum(sizes.values()) > limit:
        shown = ", ".join(f"{file} {size:,}" for file, size in sorted(sizes.items(), key=lambda x: -x[1])[:3])
        raise ModelLoadError(
            f"model '{name}': the tokenizer files in {shorten(directory)} hold {sum(sizes.values()):,} "
            f"bytes ({shown}), more than the {limit:,} a vocabulary for the model's {rows:,} embedding rows "
            f"can need ({BASE_BYTES:,} + {BYTES_PER_ROW} per row). The tokenizer does not belong to these "
            "weights (or the config's vocab_size is wrong): copy the checkpoint again."
        )
    if "tokenizer.json" in sizes:
        _check_ids(_file_vocabulary(directory / "tokenizer.json"), rows, name, "tokenizer.json")


def _file_vocabulary(path: Path) -> dict[str, int]:
    """The token ids tokenizer.json gives (its model's vocabulary and its added tokens), read as JSON
    without building the tokenizer; empty if it is not laid out as expected (loading it then reports)."""
    try:
        data = json.loads(path.read_bytes())
        vocab, added = data["model"].get("vocab") or {}, data.get("added_tokens") or []
        ids = dict(vocab) if isinstance(vocab, dict) else {str(e[0]): i for i, e in enumerate(vocab)}
        ids.update((str(t["content"]), t["id"]) for t in added)
    except (OSError, ValueError, RecursionError, LookupError, TypeError, AttributeError):
        return {}
    return {token: i for token, i in ids.items() if isinstance(i, int) and not isinstance(i, bool)}


def _check_ids(vocabulary: dict[str, int], rows: int, name: str, role: str, top: int = 0) -> None:
    """Refuse a vocabulary (or a highest id, `top`) past the `rows` of the embedding matrix."""
    top = max(max(vocabulary.values(), default=0), top)
    if top >= rows:
        over = sorted(((i, w) for w, i in vocabulary.items() if i >= rows), reverse=True)
        example = f" ({over[0][1]!r} is token {over[0][0]:,}; {len(over):,} past the end)" if over else ""
        raise ModelLoadError(
            f"model '{name}': its {role} gives token ids up to {top:,}{example}, past the {rows:,} rows of "
            "the model's embedding matrix, so scoring would fail or read the wrong rows. The tokenizer does "
            "not belong to these weights: copy the checkpoint again."
        )


def check_tokenizer(tokenizer: Any, rows: int, name: str, role: str = "tokenizer") -> None:
    """Refuse a loaded tokenizer that gives ids past `rows`, or fails or crawls on the probe texts."""
    _check_ids(tokenizer.get_vocab(), rows, name, role, len(tokenizer) - 1)
    ids = _probe(tokenizer, name, role)
    top = max((i for row in ids for i in row), default=0)
    if top >= rows:
        raise ModelLoadError(
            f"model '{name}': its {role} adds token id {top:,} to a probe text, past the {rows:,} rows of "
            "the model's embedding matrix (a special token outside the vocabulary). Copy the checkpoint "
            "again."
        )


def _probe(tokenizer: Any, name: str, role: str) -> list[list[int]]:
    """The ids of PROBE_TEXTS, tokenized in a thread that may take PROBE_SECONDS at most."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["ids"] = tokenizer(list(PROBE_TEXTS))["input_ids"]
        except BaseException as exc:  # a Rust panic is a BaseException; report it, do not die of it
            result["error"] = exc

    thread = threading.Thread(target=run, name="gliclass-tokenizer-probe", daemon=True)
    thread.start()
    thread.join(PROBE_SECONDS)
    what = f"{len(PROBE_TEXTS)} probe texts (plain words, and runs of 200 equal characters)"
    if thread.is_alive():
        raise ModelLoadError(
            f"model '{name}': its {role} took more than {PROBE_SECONDS:g} s on {what}; a tokenizer that "
            "slow (a pre-tokenizer regex that backtracks, say) would stall every job. Use its original "
            "tokenizer."
        )
    error = result.get("error")
    if error is not None:
        if not is_tokenizer_failure(error):
            raise error
        raise ModelLoadError(
            f"model '{name}': its {role} fails on {what}: {type(error).__name__}: {shorten(error)}. A "
            "tokenizer that fails on ordinary text (a pre-tokenizer regex that backtracks, say) would fail "
            "rows at random. Use its original tokenizer."
        )
    return result["ids"]


def check_markers(config: Any, tokenizer: Any, name: str) -> None:
    """The marker tokens of a model that reads them (all but the plain bi-encoder) must be single tokens
    whose ids are the config's indices."""
    if config.architecture_type == "bi-encoder":
        return
    fields: dict[str, str | None] = {LABEL_MARK: "class_token_index", SEP_MARK: None}
    if getattr(config, "use_segment_embeddings", False):
        fields.update({SEP_MARK: "text_token_index", EXAMPLE_MARK: "example_token_index"})
    ids: dict[str, int] = {}
    for marker in fields:
        pieces = tokenizer(marker, add_special_tokens=False)["input_ids"]
        if len(pieces) != 1:
            raise ModelLoadError(
                f"model '{name}': its tokenizer has no {marker} token ({marker} splits into {len(pieces)} "
                f"tokens {shorten(pieces)}); a GLiClass uni-encoder marks its labels and its text with these "
                "tokens. The tokenizer does not belong to this model: copy the checkpoint again."
            )
        ids[marker] = pieces[0]
    for marker, field in fields.items():
        configured = getattr(config, field) if field else ids[marker]
        if configured != ids[marker]:
            other = next((m for m, i in ids.items() if i == configured), None)
            also = f", the id of {other}" if other else ""
            raise ModelLoadError(
                f"model '{name}': config.json's {field} is {_number(configured)}{also}, but the tokenizer's "
                f"{marker} is token {ids[marker]:,}: the model would read the wrong tokens and score "
                "wrongly. The config and the tokenizer do not belong together: copy the checkpoint again."
            )
    if len(set(ids.values())) < len(ids):
        raise ModelLoadError(f"model '{name}': its tokenizer gives {', '.join(ids)} the same token id {ids}")


def _number(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else shorten(repr(value))
