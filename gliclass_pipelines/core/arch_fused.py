"""The bi-encoder-fused forward pass: label embeddings from the label encoder replace the text's bare
<<LABEL>> tokens, the text encoder runs over both, and each label is scored by its token's output state.

As in the reference (``GLiClassBiEncoderFused``): the label embeddings of a label set are the ones the
reference computes for that set shared by every text (cached once per set); text pooling is masked, so a
text's scores do not depend on its batch neighbours; padded label slots score -1e3.
"""

from __future__ import annotations

from typing import Any

import torch

from gliclass_pipelines.core.label_plan import EncodedSequence


def fused_logits(
    forward: Any, ids: torch.Tensor, mask: torch.Tensor, sequences: list[EncodedSequence], width: int
) -> torch.Tensor:
    """Logits (batch, width) of one padded batch; `forward` is the ModelForward of a fused model."""
    from gliclass_pipelines.core.heads import calibrated, masked_pool, score

    inner, config = forward.inner, forward.config
    embeddings = [_group_embeddings(forward, s) for s in sequences]
    dim = embeddings[0].shape[-1]
    classes = torch.zeros((len(sequences), width, dim), dtype=embeddings[0].dtype, device=ids.device)
    class_mask = torch.zeros((len(sequences), width), dtype=torch.long, device=ids.device)
    rows, positions = torch.where(ids == config.class_token_index)
    slots = torch.cat([torch.arange(len(e), device=ids.device) for e in embeddings])
    for i, e in enumerate(embeddings):
        classes[i, : len(e)] = e
        class_mask[i, : len(e)] = 1
    inputs = inner.encoder_model.get_input_embeddings()(ids)
    inputs[rows, positions] = classes[rows, slots].to(inputs.dtype)
    hidden = inner.encoder_model(inputs_embeds=inputs, attention_mask=mask)[0]
    label_states = torch.zeros_like(classes)
    label_states[rows, slots] = hidden[rows, positions].to(classes.dtype)
    text = inner.text_projector(masked_pool(forward.pooling, hidden, mask))
    if config.normalize_features:
        text = torch.nn.functional.normalize(text, p=2, dim=-1, eps=inner.epsilon)
    logits = score(config.scorer_type, inner.scorer, text, label_states, class_mask) * inner.logit_scale
    logits = torch.where(class_mask == 0, torch.full_like(logits, -1e3), logits)
    return calibrated(forward.model, logits, text, label_states, class_mask)


def _group_embeddings(forward: Any, sequence: EncodedSequence) -> torch.Tensor:
    """The embeddings of one sequence's label group: its slice of its whole label set's embeddings."""
    group = sequence.group
    every = forward._label_embeddings_for(sequence.plan.labels)
    return every[group.offset : group.offset + len(group.labels)]
