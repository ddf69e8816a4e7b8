"""Texts to model inputs: tokenize each text once, join it with its label groups as token ids.

Labels are never truncated: when a sequence is too long, the text is cut (``truncate``) or split into
overlapping windows (``chunk``) and the labels kept. A tokenizer whose tokens depend on their
neighbours (found by a probe at load) gets each row tokenized whole instead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gliclass_pipelines.errors import ConfigError
from gliclass_pipelines.labels_plan import (
    LabelGroup,
    LabelPlan,
    format_examples,
    label_groups,
    reference_string,
)
from gliclass_pipelines.outcomes import RowOutcome
from gliclass_pipelines.taxonomy import SEP_MARK, Example

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
    if text is None or (isinstance(text, float) and text != text):
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
class EncodedSequence:
    """One model input: a text (or a window of it) with one label group."""

    row: int
    plan: LabelPlan
    group: LabelGroup
    ids: list[int]


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
        self.architecture = architecture
        self.prompt_first = prompt_first
        self.max_length = max_length
        self.label_slots = label_slots
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
        room = self.max_length - len(self.prefix) - len(self.suffix) - self.min_text_tokens
        return label_groups(
            labels,
            prompt,
            examples,
            self.tokens_many,
            room=room,
            max_length=self.max_length,
            prompt_first=self.prompt_first,
            max_labels=self.label_slots,
        )

    def encode(
        self, texts: list[str], plans: list[LabelPlan], long_text: str, overlap: int
    ) -> tuple[list[EncodedSequence], list[bool]]:
        """One sequence per (text, label group), or per window of a long text; and which texts were cut."""
        fixed = len(self.prefix) + len(self.suffix)
        cap = self.max_length if long_text == "truncate" else None
        text_ids = self.text_ids(texts, [plan.prompt for plan in plans], cap)
        sequences: list[EncodedSequence] = []
        truncated = [False] * len(texts)
        for row, (ids, plan) in enumerate(zip(text_ids, plans)):
            for group in plan.groups:
                budget = self.max_length - fixed - len(group.head) - len(group.tail)
                if self.joint_tokenization and len(ids) <= budget:
                    windows = [None]
                elif len(ids) <= budget:
                    windows = [ids]
                else:
                    truncated[row] = True
                    windows = [ids[:budget]] if long_text == "truncate" else windows_of(ids, budget, overlap)
                for window in windows:
                    full = (
                        self._joint_ids(texts[row], plan, group)
                        if window is None
                        else [*self.prefix, *group.head, *window, *group.tail, *self.suffix]
                    )
                    sequences.append(EncodedSequence(row, plan, group, full))
        return sequences, truncated

    def text_ids(self, texts: list[str], prompts: list[str], cap: int | None) -> list[list[int]]:
        """Token ids of each text in its place in the sequence (without labels and special tokens).

        With a cap (truncate policy), very long strings are cut by characters before tokenizing, and
        tokenized whole only if the cut leaves too few tokens to be sure of the first `cap`.
        """
        strings = self._text_strings(texts, prompts)
        limit = None if cap is None else max(4096, cap * 64)
        if limit is not None:
            strings = [s[:limit] if len(s) > limit else s for s in strings]
        ids = self.tokens_many(strings)
        if limit is not None:
            for i, text in enumerate(texts):
                if len(text) > limit and len(ids[i]) <= cap + 32:
                    ids[i] = self.tokens_many(self._text_strings([text], [prompts[i]]))[0]
        if self.architecture == "uni-encoder" and self.prompt_first:
            ids = [row[1:] for row in ids]
        return ids

    def _text_strings(self, texts: list[str], prompts: list[str]) -> list[str]:
        if self.architecture == "bi-encoder":
            return [f"{prompt} {text}" if prompt else text for text, prompt in zip(texts, prompts)]
        if self.prompt_first:
            return [SEP_MARK + prompt + text for text, prompt in zip(texts, prompts)]
        return texts

    def _joint_ids(self, text: str, plan: LabelPlan, group: LabelGroup) -> list[int]:
        whole = reference_string(text, group.labels, plan.prompt, plan.examples, self.prompt_first)
        return self.tokenizer(whole)["input_ids"]

    def _segments_match_reference(self) -> bool:
        """Check that joining separately tokenized segments gives the reference's token ids."""
        if self.architecture != "uni-encoder":
            return True
        probe_text = "A probe text: it checks, token by token, that segments join like the whole."
        labels = ("sports", "science fiction")
        examples = format_examples((Example("An example text.", ("sports",)),))
        prompt = "Classify the text."
        group = self.label_groups(labels, prompt, examples)[0]
        ids = self.text_ids([probe_text], [prompt], None)[0]
        joined = [*self.prefix, *group.head, *ids, *group.tail, *self.suffix]
        whole = self.tokenizer(reference_string(probe_text, labels, prompt, examples, self.prompt_first))
        return joined == list(whole["input_ids"])


def windows_of(ids: list[int], size: int, overlap: int) -> list[list[int]]:
    """Windows of `size` tokens covering `ids`, each overlapping the previous by up to `overlap`."""
    step = max(1, size - min(overlap, size // 2))
    windows, start = [], 0
    while True:
        windows.append(ids[start : start + size])
        if start + size >= len(ids):
            return windows
        start += step


def special_affixes(tokenizer: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The special token ids the tokenizer puts before and after a single sequence."""
    marker = tokenizer.convert_tokens_to_ids(SEP_MARK)
    ids = tokenizer(SEP_MARK)["input_ids"]
    at = ids.index(marker)
    return tuple(ids[:at]), tuple(ids[at + 1 :])
