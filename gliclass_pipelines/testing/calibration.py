"""Scale a tiny random checkpoint's head so its logits land in the useful middle of the sigmoid."""

from __future__ import annotations

from typing import Any

from gliclass_pipelines.taxonomy.labels import LABEL_MARK, SEP_MARK

# Texts and labels the output scale is calibrated on (see calibrate_logits); unrelated to any test data.
_PROBE_TEXTS = (
    "A storm closed the airport and hundreds of flights were cancelled.",
    "The new law protects workers who report fraud at their company.",
    "Our team lost the final match in the last minute.",
    "This laptop is fast and light, and the screen is great.",
    "Eat more fruit and vegetables.",
)
_PROBE_LABELS = ("weather", "politics", "sports", "technology", "travel", "food and health")
_TARGET_LOGIT_STD = 1.5


def _probe(model: Any, tokenizer: Any, *, architecture: str, prompt_first: bool) -> tuple[Any, Any]:
    """(logits, class embeddings) of the probe batch, formatted the way the gliclass pipelines format it."""
    import torch

    texts, labels = list(_PROBE_TEXTS), list(_PROBE_LABELS)
    if architecture.startswith("encoder-decoder"):
        inputs = dict(tokenizer(texts, padding="longest", return_tensors="pt"))
        classes = tokenizer(["".join(LABEL_MARK + label for label in labels) + SEP_MARK] * len(texts))
        inputs["class_input_ids"] = torch.tensor(classes["input_ids"])
        inputs["class_attention_mask"] = torch.tensor(classes["attention_mask"])
    elif architecture == "uni-encoder":
        prompt = "".join(LABEL_MARK + label for label in labels) + SEP_MARK
        sequences = [prompt + text if prompt_first else text + prompt for text in texts]
        inputs = dict(tokenizer(sequences, padding="longest", return_tensors="pt"))
        inputs["max_num_classes"] = len(labels)
    else:
        if architecture == "bi-encoder-fused":
            texts = [LABEL_MARK * len(labels) + SEP_MARK + text for text in texts]
        text_inputs = tokenizer(texts, padding="longest", return_tensors="pt")
        label_inputs = tokenizer(labels, padding="longest", return_tensors="pt")
        inputs = {
            "input_ids": text_inputs["input_ids"],
            "attention_mask": text_inputs["attention_mask"],
            "class_input_ids": label_inputs["input_ids"].expand(len(texts), -1, -1),
            "class_attention_mask": label_inputs["attention_mask"].expand(len(texts), -1, -1),
            "labels_mask": torch.ones(len(texts), len(labels), dtype=torch.long),
        }
    with torch.no_grad():
        output = model(**inputs, output_text_embeddings=True, output_class_embeddings=True, return_dict=True)
    return output.logits[:, : len(labels)], output.class_embeddings[:, : len(labels)]


def _round_significant(value: float, digits: int = 3) -> float:
    return float(f"{value:.{digits - 1}e}")


def calibrate_logits(model: Any, tokenizer: Any, *, architecture: str, prompt_first: bool) -> None:
    """Rescale the head so probe logits have mean ~0 and std ~_TARGET_LOGIT_STD.

    Random weights put logits anywhere from +-0.01 (every score 0.5) to +-50 (every score 0 or 1),
    depending on backbone, pooling and scorer; this makes all variants land in the useful middle.
    The factors are rounded, so tiny floating-point differences between machines do not change the
    saved weights.
    """
    import torch
    from torch import nn

    head = model.model
    scorer_layers = [m for m in head.scorer.modules() if isinstance(m, nn.Linear) and m.out_features == 1]
    probe = {"architecture": architecture, "prompt_first": prompt_first}
    with torch.no_grad():
        if scorer_layers:
            # MLP-style scorers end in Linear(..., 1): logits are affine in its output
            # (the bi-encoder multiplies the scorer's output by logit_scale)
            last = scorer_layers[-1]
            multiplier = head.logit_scale.item() if architecture.startswith("bi-encoder") else 1.0
            logits, _ = _probe(model, tokenizer, **probe)
            mean = _round_significant(logits.mean().item() / multiplier)
            scale = _round_significant(_TARGET_LOGIT_STD / max(logits.std().item(), 1e-6))
            last.bias.sub_(mean).mul_(scale)
            last.weight.mul_(scale)
        elif not any(True for _ in head.scorer.parameters()):
            # dot-product scorer: logits are bilinear in the projected text and class embeddings.
            # Centre the class embeddings (the common direction every label shares), then scale the text side.
            _, class_embeddings = _probe(model, tokenizer, **probe)
            shift = torch.round(class_embeddings.reshape(-1, class_embeddings.shape[-1]).mean(0), decimals=3)
            head.classes_projector.linear_2.bias.sub_(shift)
            logits, _ = _probe(model, tokenizer, **probe)
            scale = _round_significant(_TARGET_LOGIT_STD / max(logits.std().item(), 1e-6))
            head.text_projector.linear_2.weight.mul_(scale)
            head.text_projector.linear_2.bias.mul_(scale)
