"""The encoder-decoder architectures (T5-style backbones), as the reference's ``GLiClassEncoderDecoder``
and ``GLiClassEncoderDecoderCLS`` run them.

The text (with its few-shot examples) and the label section (``<<LABEL>>label...<<SEP>>prompt``) are two
sequences. ``encoder-decoder`` feeds the text to the encoder and the labels to the decoder (attending both
ways, as the reference's 4-D mask makes it); ``encoder-decoder-cls`` the labels to the encoder and the
text to the (causal) decoder, whose last real token is the text's feature. Both read the label features
over ``max_num_classes`` slots, as the reference does. Here both sequences are padded on the right and
masked (text pooling included), so a row's scores do not depend on its batch neighbours.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gliclass_pipelines.core.label_plan import LabelGroup, label_section

if TYPE_CHECKING:
    import torch

    from gliclass_pipelines.core.label_plan import EncodedSequence


def encoder_decoder_groups(
    encoder: Any, labels: tuple[str, ...], prompt: str, examples: str, slots: int
) -> list[LabelGroup]:
    """Groups of at most `slots` labels whose label sequence fits max_length; each group's `decoder` holds
    that sequence's ids (special tokens included) and its `tail` the examples that follow the text."""
    from gliclass_pipelines.errors import ConfigError

    tail = tuple(encoder.tokens_many([examples])[0]) if examples else ()
    room = encoder.max_length - len(encoder.prefix) - len(encoder.suffix)
    groups: list[LabelGroup] = []
    start = 0
    while start < len(labels):
        end = min(len(labels), start + slots)
        ids = encoder.tokens_many([label_section(labels[start:end], prompt)])[0]
        while len(ids) > room and end - start > 1:
            end -= 1
            ids = encoder.tokens_many([label_section(labels[start:end], prompt)])[0]
        if len(ids) > room:
            raise ConfigError(
                f"label {labels[start]!r} (with the prompt) needs {len(ids)} tokens, more than the {room} "
                f"a label sequence of max_length={encoder.max_length} holds; shorten it"
            )
        decoder = (*encoder.prefix, *ids, *encoder.suffix)
        groups.append(LabelGroup(labels[start:end], start, (), tail, decoder))
        start = end
    return groups


def encoder_decoder_logits(
    forward: Any, ids: torch.Tensor, mask: torch.Tensor, sequences: list[EncodedSequence], width: int
) -> torch.Tensor:
    """Logits (batch, width = max_num_classes) of one padded batch of a model of ENCODER_DECODERS."""
    import torch

    from gliclass_pipelines.core.heads import calibrated, masked_pool, score

    inner, config = forward.inner, forward.config
    label_ids, label_mask = _label_batch(sequences, config.pad_token_id or 0, ids.device)
    backbone = inner.encoder_decoder_model
    if config.architecture_type == "encoder-decoder":
        dtype = next(backbone.parameters()).dtype
        outputs = backbone(
            input_ids=ids,
            attention_mask=mask,
            decoder_input_ids=label_ids,
            decoder_attention_mask=inner._make_bidirectional_4d_mask(label_mask, dtype),
        )
        label_states, text_states = outputs.last_hidden_state, outputs.encoder_last_hidden_state
        pooled = masked_pool(forward.pooling, text_states, mask)
    else:
        outputs = backbone(
            input_ids=label_ids,
            attention_mask=label_mask,
            decoder_input_ids=ids,
            decoder_attention_mask=mask,
        )
        label_states = outputs.encoder_last_hidden_state
        pooled = masked_pool("last", outputs.last_hidden_state, mask)  # the reference ignores the pooling
    classes, class_mask, _, _ = inner._extract_class_features(label_states, label_ids, label_mask)
    pooled = inner.text_projector(pooled)
    classes = inner.classes_projector(classes)
    if config.normalize_features:
        pooled = torch.nn.functional.normalize(pooled, p=2, dim=-1, eps=inner.epsilon)
        classes = torch.nn.functional.normalize(classes, p=2, dim=-1, eps=inner.epsilon)
    every_slot = class_mask.new_ones(class_mask.shape)  # the reference's scorer sees every slot
    logits = score(config.scorer_type, inner.scorer, pooled, classes, every_slot, text_mask=mask)
    if config.normalize_features:
        logits = logits * inner.logit_scale
    return calibrated(forward.model, logits, pooled, classes, class_mask)


def _label_batch(
    sequences: list[EncodedSequence], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    width = max(len(s.group.decoder) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, s in enumerate(sequences):
        ids[i, : len(s.group.decoder)] = torch.tensor(s.group.decoder, dtype=torch.long)
        mask[i, : len(s.group.decoder)] = 1
    return ids.to(device), mask.to(device)
