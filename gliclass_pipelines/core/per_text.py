"""Call options given one per text, as the reference takes them: a threshold, a prompt and few-shot
examples per text, and retrieval-augmented examples (``rac_examples``) appended to each text.

Each text's (threshold, prompt, examples) makes its own label plan, cached like per-row labels, so a row's
scores never depend on its neighbours'. ``rac_examples`` are written into the text as the reference writes
them (``text <<EXAMPLE>> example <<TRUE_LABEL>> a <<FALSE_LABEL>> b <</EXAMPLE>>``); the false labels of an
example follow its ``all_labels`` order, where the reference takes a set difference whose order changes with
Python's hash seed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from gliclass_pipelines._common.checks import check_threshold
from gliclass_pipelines._common.redaction import shorten
from gliclass_pipelines.core.outcomes import RowOutcome, is_missing
from gliclass_pipelines.errors import ConfigError
from gliclass_pipelines.taxonomy.rules import check_prompt

RAC_KEYS = ("text", "true_labels", "all_labels")


class TextOptions(NamedTuple):
    threshold: float
    prompt: str | None
    examples: Any


def is_list(value: Any) -> bool:
    return isinstance(value, list | tuple)


def examples_per_text(examples: Any) -> bool:
    """Whether few-shot examples come one list per text (the reference's rule): a non-empty list whose
    items are all lists or None."""
    if not is_list(examples) or not examples:
        return False
    return all(item is None or is_list(item) for item in examples)


def _one_each(values: Sequence[Any], rows: int, what: str) -> list[Any]:
    if len(values) != rows:
        raise ConfigError(f"{what}: got {len(values)} values for {rows} texts; give one per text")
    return list(values)


def per_text_options(rows: int, threshold: Any, prompt: Any, examples: Any) -> list[TextOptions] | None:
    """Each text's options when any of threshold, prompt or examples is given per text, else None."""
    thresholds = _one_each(threshold, rows, "threshold") if is_list(threshold) else None
    prompts = _one_each(prompt, rows, "prompt") if is_list(prompt) else None
    per_examples = _one_each(examples, rows, "examples") if examples_per_text(examples) else None
    if thresholds is None and prompts is None and per_examples is None:
        return None
    for i, value in enumerate(thresholds or ()):
        check_threshold(value, f"threshold of text {i}")
    return [
        TextOptions(
            threshold if thresholds is None else float(thresholds[i]),
            prompt if prompts is None else prompts[i],
            examples if per_examples is None else per_examples[i],
        )
        for i in range(rows)
    ]


def _rac_example(example: Any) -> tuple[str, list[str], list[str]]:
    if not isinstance(example, Mapping) or not isinstance(example.get("text"), str):
        raise ConfigError(
            f"a retrieval-augmented example must be a mapping with a 'text' str, 'true_labels' and "
            f"'all_labels' lists, got {shorten(repr(example))}"
        )
    lists = [example.get(key, []) for key in RAC_KEYS[1:]]
    if not all(is_list(v) and all(isinstance(x, str) for x in v) for v in lists):
        raise ConfigError(f"'true_labels' and 'all_labels' must be lists of str in {shorten(repr(example))}")
    return example["text"], list(lists[0]), list(lists[1])


def augmented_text(text: str, examples: Sequence[Any]) -> str:
    """The text with its retrieval-augmented examples after it, as the reference writes them."""
    parsed = [_rac_example(example) for example in examples]
    shown = []
    for example_text, true, every in parsed:
        if not true:  # the reference keeps only examples that share a true label with the others
            continue
        false = [label for label in dict.fromkeys(every) if label not in true]
        true_part = " ".join(f"<<TRUE_LABEL>> {label}" for label in true)
        false_part = " ".join(f"<<FALSE_LABEL>> {label}" for label in false)
        shown.append(f"<<EXAMPLE>> {example_text} {true_part} {false_part} <</EXAMPLE>>")
    return f"{text} {' '.join(shown)}" if shown else text


def with_rac_examples(texts: list[Any], rac_examples: Any) -> list[Any]:
    """Texts with their retrieval-augmented examples: one list for every text, or one list per text."""
    if rac_examples is None:
        return texts
    if not is_list(rac_examples):
        raise ConfigError(f"rac_examples must be a list, got {type(rac_examples).__name__}")
    if examples_per_text(rac_examples):
        each = _one_each(rac_examples, len(texts), "rac_examples")
    else:
        each = [rac_examples] * len(texts)
    return [
        augmented_text(text, examples or ()) if isinstance(text, str) else text
        for text, examples in zip(texts, each)
    ]


class RowOptions(NamedTuple):
    """An engine's per-row prompts and thresholds as Classifier.run takes them, and each row's problem."""

    prompt: list[str | None]
    threshold: list[float]
    problems: list[RowOutcome | None]


def row_options(
    rows: int, prompts: Sequence[Any] | None, thresholds: Sequence[Any] | None, prompt: Any, threshold: float
) -> RowOptions:
    """Per-row prompt and threshold cells from a column or field: a null cell takes the job's `prompt` or
    `threshold`; an unusable cell fails its row (its reason in ``problems``), never the batch."""
    prompts = [None] * rows if prompts is None else _one_each(list(prompts), rows, "row prompts")
    thresholds = [None] * rows if thresholds is None else _one_each(list(thresholds), rows, "row thresholds")
    out = RowOptions([prompt] * rows, [threshold] * rows, [None] * rows)
    for i, (cell_prompt, cell_threshold) in enumerate(zip(prompts, thresholds)):
        try:
            if not is_missing(cell_prompt):
                out.prompt[i] = check_prompt(cell_prompt)
            if not is_missing(cell_threshold):
                out.threshold[i] = check_threshold(cell_threshold)
        except ConfigError as exc:
            out.problems[i] = RowOutcome.failed(f"invalid row option: {exc}", "invalid_option")
    return out
