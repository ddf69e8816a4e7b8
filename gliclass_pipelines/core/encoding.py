"""Texts to model inputs: tokenize each text once, join it with its label groups as token ids.

Labels are never truncated: when a sequence is too long, the text is cut (``truncate``) or split into
overlapping windows (``chunk``; streamed for very long texts, :mod:`~.long_text`) and the
labels kept. A row the tokenizer fails on (a Rust panic included) is a failed row. A tokenizer whose
tokens depend on their neighbours (found by a probe at load) gets each row tokenized whole instead.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from gliclass_pipelines._common.redaction import shorten
from gliclass_pipelines.core.arch_encdec import encoder_decoder_groups
from gliclass_pipelines.core.label_plan import (
    EncodedSequence,
    LabelGroup,
    LabelPlan,
    format_examples,
    label_groups,
    reference_string,
)
from gliclass_pipelines.core.long_text import STREAM_CHARS, WINDOW_BATCH, Windows, text_pieces, windows_of
from gliclass_pipelines.core.outcomes import RowOutcome, is_missing
from gliclass_pipelines.errors import ConfigError, ModelLoadError
from gliclass_pipelines.model.fields import ENCODER_DECODERS
from gliclass_pipelines.model.tokenizer_checks import is_tokenizer_failure
from gliclass_pipelines.taxonomy.labels import SEP_MARK
from gliclass_pipelines.taxonomy.rules import Example

logger = logging.getLogger(__name__)

LONG_TEXT_POLICIES = ("truncate", "chunk")
DEFAULT_MAX_LENGTH = 1024  # the reference's sequence length
CHARS_PER_TOKEN = 4


def estimate_tokens(text: Any, cap: int | None = None) -> int:
    """A tokenizer-free token estimate (about 4 characters a token), for batch weights and length buckets."""
    n = len(text) // CHARS_PER_TOKEN + 1 if isinstance(text, str) else 1
    return min(n, cap) if cap else n


def estimate_label_tokens(labels: Sequence[str]) -> int:
    """The estimated tokens a label set adds to each sequence (one marker token per label)."""
    return sum(estimate_tokens(label) + 1 for label in labels)


def text_token_cap(max_length: int | None, long_text: str) -> int | None:
    """The most tokens a text can count for: a truncated text is cut at the sequence length."""
    return (max_length or DEFAULT_MAX_LENGTH) if long_text == "truncate" else None


def text_problem(text: Any) -> RowOutcome | None:
    """Why a text gets no result (a null, blank, non-string or not-UTF-8-encodable text), else None."""
    if is_missing(text):
        return RowOutcome.null_input("null text", "null_text")
    if not isinstance(text, str):
        return RowOutcome.failed(f"text is a {type(text).__name__}, not a string", "not_a_string")
    if not text.strip():
        return RowOutcome.null_input("blank text", "blank_text")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate: tokenizers refuse the whole batch
            reason = f"text is not valid Unicode: lone surrogate {text[exc.start]!r} at character {exc.start}"
            return RowOutcome.failed(reason, "lone_surrogate")
    return None


def check_max_length(max_length: int | None, positions: int | None, source: str) -> int:
    """The sequence length to use; a max_length past the encoder's positions would fail on long rows only."""
    if not max_length:
        return DEFAULT_MAX_LENGTH if positions is None else min(DEFAULT_MAX_LENGTH, positions)
    if positions is not None and max_length > positions:
        raise ConfigError(
            f"max_length={max_length} is more than the {positions} positions of the encoder of {source}; "
            f"give max_length <= {positions} (or leave it unset)"
        )
    return max_length


@dataclass
class Encoded:
    """What encoding some texts gave: their sequences, which texts were cut, which the tokenizer failed
    on (row -> outcome), and which are long enough to stream (:meth:`TextEncoder.stream`)."""

    sequences: list[EncodedSequence]
    truncated: list[bool]
    failed: dict[int, RowOutcome] = field(default_factory=dict)
    streamed: list[int] = field(default_factory=list)


def tokenizer_failed(exc: BaseException) -> RowOutcome:
    return RowOutcome.failed(
        f"the tokenizer failed on this text: {type(exc).__name__}: {shorten(exc)}", "tokenizer"
    )


class TextEncoder:
    """Token ids for one model's tokenizer and input layout (uni- or bi-encoder, prompt first or not)."""

    def __init__(
        self,
        tokenizer: Any,
        *,
        architecture: str,
        prompt_first: bool,
        max_length: int,
        label_slots: int | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        quiet_length_warning(tokenizer)
        self.architecture = architecture
        self.prompt_first = prompt_first
        self.max_length = max_length
        self.label_slots = label_slots
        self.fused = architecture == "bi-encoder-fused"  # labels in the text as bare <<LABEL>> tokens
        self.prefix, self.suffix = special_affixes(tokenizer)
        self.joint_tokenization = not self._segments_match_reference()

    @property
    def min_text_tokens(self) -> int:
        return max(16, self.max_length // 8)

    def tokens_many(self, texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"]

    def label_groups(self, labels: tuple[str, ...], prompt: str, examples: str) -> list[LabelGroup]:
        """Split the labels into groups whose sequences leave room for the text, each within the model's
        label slots."""
        if self.architecture in ENCODER_DECODERS:
            return encoder_decoder_groups(self, labels, prompt, examples, self.label_slots)
        room = self.max_length - len(self.prefix) - len(self.suffix) - self.min_text_tokens
        return label_groups(
            labels,
            prompt,
            examples,
            self._label_tokens,
            room=room,
            max_length=self.max_length,
            prompt_first=self.prompt_first,
            max_labels=self.label_slots,
            fused=self.fused,
        )

    def _label_tokens(self, texts: list[str]) -> list[list[int]]:
        try:
            return self.tokens_many(texts)
        except BaseException as exc:
            if not is_tokenizer_failure(exc):
                raise
            raise ConfigError(
                f"the model's tokenizer failed on the labels, prompt or examples: {type(exc).__name__}: "
                f"{shorten(exc)}"
            ) from exc

    def encode(self, texts: list[str], plans: list[LabelPlan], long_text: str, overlap: int) -> Encoded:
        """One sequence per (text, label group), or per window of a long text, except for the texts
        long enough to stream (``chunk``: windows from :meth:`stream`) and those the tokenizer fails on."""
        streamed = [i for i, t in enumerate(texts) if long_text == "chunk" and len(t) > STREAM_CHARS]
        skip = set(streamed)
        cap = self.max_length if long_text == "truncate" else None
        failed: dict[int, RowOutcome] = {}
        kept = [i for i in range(len(texts)) if i not in skip]
        text_ids = self.text_ids([texts[i] for i in kept], [plans[i].prompt for i in kept], cap, failed)
        failed = {kept[i]: outcome for i, outcome in failed.items()}
        encoded = Encoded([], [False] * len(texts), {}, streamed)
        for row, ids in zip(kept, text_ids):
            if row in failed:
                encoded.failed[row] = failed[row]
                continue
            try:
                sequences, encoded.truncated[row] = self._row_sequences(
                    row, texts[row], ids, plans[row], long_text, overlap
                )
            except BaseException as exc:
                if not is_tokenizer_failure(exc):
                    raise
                encoded.failed[row] = tokenizer_failed(exc)
                continue
            encoded.sequences.extend(sequences)
        return encoded

    def _row_sequences(
        self, row: int, text: str, ids: list[int], plan: LabelPlan, long_text: str, overlap: int
    ) -> tuple[list[EncodedSequence], bool]:
        sequences, truncated = [], False
        for group in plan.groups:
            budget = self.budget(group)
            if (self.joint_tokenization or self._text_meets_prompt(plan)) and len(ids) <= budget:
                sequences.append(EncodedSequence(row, plan, group, self._joint_ids(text, plan, group)))
                continue
            if len(ids) <= budget:
                windows = [ids]
            else:
                truncated = True
                windows = [ids[:budget]] if long_text == "truncate" else windows_of(ids, budget, overlap)
            sequences.extend(EncodedSequence(row, plan, group, self.wrap(group, w)) for w in windows)
        return sequences, truncated

    def stream(self, row: int, text: str, plan: LabelPlan, overlap: int) -> Iterator[list[EncodedSequence]]:
        """The chunk windows of one long text, a batch at a time, tokenized a piece at a time: the same
        windows as :meth:`encode` gives when the pieces' ids join into the whole text's. Raises what the
        tokenizer raises."""
        windows = [(group, Windows(self.budget(group), overlap)) for group in plan.groups]
        pending: list[EncodedSequence] = []
        for first, piece in enumerate(text_pieces(text)):
            if first == 0:
                ids = self.text_ids([piece], [plan.prompt], None)[0]
            else:
                ids = self.tokens_many([piece])[0]
            for group, group_windows in windows:
                pending.extend(
                    EncodedSequence(row, plan, group, self.wrap(group, w)) for w in group_windows.feed(ids)
                )
            if len(pending) >= WINDOW_BATCH:
                yield pending
                pending = []
        pending.extend(EncodedSequence(row, plan, g, self.wrap(g, w.finish())) for g, w in windows)
        yield pending

    def budget(self, group: LabelGroup) -> int:
        """The most text tokens one sequence with this label group holds."""
        return self.max_length - len(self.prefix) - len(self.suffix) - len(group.head) - len(group.tail)

    def wrap(self, group: LabelGroup, window: list[int]) -> list[int]:
        return [*self.prefix, *group.head, *window, *group.tail, *self.suffix]

    def text_ids(
        self,
        texts: list[str],
        prompts: list[str],
        cap: int | None,
        failed: dict[int, RowOutcome] | None = None,
    ) -> list[list[int]]:
        """Token ids of each text in its place in the sequence (without labels and special tokens).

        With a cap (truncate policy), very long strings are cut by characters before tokenizing, and
        tokenized whole only if the cut leaves too few tokens to be sure of the first `cap`. With
        `failed`, a text the tokenizer fails on gets no ids and its outcome there; without, it raises.
        """
        strings = self._text_strings(texts, prompts)
        limit = None if cap is None else max(4096, cap * 64)
        if limit is not None:
            strings = [s[:limit] if len(s) > limit else s for s in strings]
        ids = self._tokens_rows(strings, failed)
        if limit is not None:
            for i, text in enumerate(texts):
                if len(text) > limit and len(ids[i]) <= cap + 32 and i not in (failed or {}):
                    again: dict[int, RowOutcome] | None = None if failed is None else {}
                    ids[i] = self._tokens_rows(self._text_strings([text], [prompts[i]]), again)[0]
                    if again:
                        failed[i] = again[0]
        if self.architecture in ("uni-encoder", "bi-encoder-fused") and self.prompt_first:
            ids = [row[1:] for row in ids]
        return ids

    def _tokens_rows(self, strings: list[str], failed: dict[int, RowOutcome] | None) -> list[list[int]]:
        """tokens_many; if it fails and `failed` is given, each string alone, recording those that fail."""
        try:
            return self.tokens_many(strings)
        except BaseException as exc:
            if failed is None or not is_tokenizer_failure(exc):
                raise
        ids: list[list[int]] = []
        for i, string in enumerate(strings):
            try:
                ids.append(self.tokens_many([string])[0])
            except BaseException as exc:
                if not is_tokenizer_failure(exc):
                    raise
                failed[i] = tokenizer_failed(exc)
                ids.append([])
        return ids

    def _text_strings(self, texts: list[str], prompts: list[str]) -> list[str]:
        if self.architecture == "bi-encoder":
            return [f"{prompt} {text}" if prompt else text for text, prompt in zip(texts, prompts)]
        if self.architecture in ENCODER_DECODERS:  # the prompt follows the labels, in their own sequence
            return texts
        if self.prompt_first:  # after the <<SEP>> of the labels; the fused layout's prompt goes before them
            return [SEP_MARK + ("" if self.fused else prompt) + text for text, prompt in zip(texts, prompts)]
        return texts

    def _text_meets_prompt(self, plan: LabelPlan) -> bool:
        """Whether the reference's string puts the prompt right after the text, with no marker between
        (bi-encoder-fused, text first): the two then tokenize together, so the row is tokenized whole."""
        return self.fused and not self.prompt_first and bool(plan.prompt)

    def _joint_ids(self, text: str, plan: LabelPlan, group: LabelGroup) -> list[int]:
        whole = reference_string(
            text, group.labels, plan.prompt, plan.examples, self.prompt_first, self.fused
        )
        return self.tokenizer(whole)["input_ids"]

    def _segments_match_reference(self) -> bool:
        """Check that joining separately tokenized segments gives the reference's token ids."""
        if self.architecture in ("bi-encoder", *ENCODER_DECODERS):
            return True
        probe_text = "A probe text: it checks, token by token, that segments join like the whole."
        labels = ("sports", "science fiction")
        examples = format_examples((Example("An example text.", ("sports",)),))
        prompt = "Classify the text."
        group = self.label_groups(labels, prompt, examples)[0]
        ids = self.text_ids([probe_text], [prompt], None)[0]
        joined = [*self.prefix, *group.head, *ids, *group.tail, *self.suffix]
        whole = self.tokenizer(
            reference_string(probe_text, labels, prompt, examples, self.prompt_first, self.fused)
        )
        return joined == list(whole["input_ids"])


def special_affixes(tokenizer: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The special token ids the tokenizer puts before and after a single sequence (found around the
    <<SEP>> marker, or around a plain word where the marker is not one token: a bi-encoder needs none)."""
    probe = SEP_MARK
    inner = tokenizer(probe, add_special_tokens=False)["input_ids"]
    if len(inner) != 1:
        probe = "a"
        inner = tokenizer(probe, add_special_tokens=False)["input_ids"]
    ids = list(tokenizer(probe)["input_ids"])
    for at in range(len(ids) - len(inner) + 1):
        if ids[at : at + len(inner)] == inner:
            return tuple(ids[:at]), tuple(ids[at + len(inner) :])
    raise ModelLoadError(f"the tokenizer does not keep the ids of {probe!r} when it adds its special tokens")


def quiet_length_warning(tokenizer: Any) -> None:
    """Silence transformers' "Token indices sequence length is longer than ..." for `tokenizer`: it is
    false here (we tokenize whole texts on purpose, then truncate or chunk them to max_length)."""
    warned = getattr(tokenizer, "deprecation_warnings", None)
    if isinstance(warned, dict):
        warned["sequence-length-is-longer-than-the-specified-maximum"] = True
