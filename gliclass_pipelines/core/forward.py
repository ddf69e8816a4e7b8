"""The forward pass: the only code that touches the internals of a gliclass model.

:class:`ModelForward` takes the model object as given and only calls it, so any object with the same
submodules (a quantized copy, say) runs unchanged. Text pooling is masked, and so is every scorer that
mixes labels, so a text's scores do not depend on which texts share its batch.

Of the reference's scorers, ``hopfield`` mixes labels (a softmax over the label slots); it runs here with
its own weights over the slots the reference allocates to that row alone (:data:`LABEL_MIXING_SCORERS`).
``simple``, ``weighted-dot`` and ``mlp`` score each label on its own; ``cross-attn`` (with ``pass`` pooling,
which keeps the token states) lets each label attend over the sequence's tokens, masked by the attention
mask, never over the other labels. The calibrator reads statistics over a row's labels, through the class
mask, which counts real labels only.

Label slots follow the checkpoint's ``max_labels_alloc``: the uni-encoder gets one slot per label
(``"dynamic"``), ``max_num_classes`` slots (``"fixed"``) or the integer's; empty allocated slots take part
in a label-mixing scorer, as they do in the reference. The reference's bi-encoder ignores the setting.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gliclass_pipelines.core.arch_encdec import encoder_decoder_logits
from gliclass_pipelines.core.arch_fused import fused_logits
from gliclass_pipelines.core.heads import calibrated, masked_pool, score
from gliclass_pipelines.core.label_plan import EncodedSequence
from gliclass_pipelines.model.fields import ENCODER_DECODERS, allocated_slots

BI_ENCODERS = ("bi-encoder", "bi-encoder-fused")  # architectures with a label encoder


@dataclass
class Batch:
    """Padded token ids of some sequences, ready for the model."""

    sequences: list[EncodedSequence]
    input_ids: torch.Tensor
    attention_mask: torch.Tensor

    @property
    def real_tokens(self) -> int:
        return sum(len(s.ids) for s in self.sequences)

    @property
    def padded_tokens(self) -> int:
        return int(self.input_ids.numel())


def collate(sequences: list[EncodedSequence], pad_id: int) -> Batch:
    width = max(len(s.ids) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, s in enumerate(sequences):
        ids[i, : len(s.ids)] = torch.tensor(s.ids, dtype=torch.long)
        mask[i, : len(s.ids)] = 1
    return Batch(sequences, ids, mask)


def label_slots(config: Any) -> int | None:
    """The label slots of every sequence of this model (max_labels_alloc), or None for one per label."""
    if config.architecture_type in BI_ENCODERS:  # the reference's bi-encoders ignore max_labels_alloc
        return None
    if config.architecture_type in ENCODER_DECODERS:  # they always read max_num_classes slots
        return int(config.max_num_classes)
    return allocated_slots(getattr(config, "max_labels_alloc", "dynamic"), config.max_num_classes)


def max_positions(config: Any) -> int | None:
    """How many positions the model's encoder has (None: relative positions, no limit)."""
    encoder = config.encoder_config
    relative = encoder.model_type == "deberta-v2" and not getattr(encoder, "position_biased_input", True)
    positions = getattr(encoder, "max_position_embeddings", None)
    return None if relative or not positions else int(positions)


class ModelForward:
    """Logits of batches for one loaded GLiClass model on one device."""

    def __init__(self, model: Any, *, device: torch.device, label_tokenizer: Any, max_length: int) -> None:
        self.model = model
        self.config = model.config
        self.inner = model.model
        self.device = device
        self.label_tokenizer = label_tokenizer
        self.max_length = max_length
        self.architecture = self.config.architecture_type
        self.pooling = self.config.pooling_strategy
        self.label_slots = label_slots(self.config)
        self._lock = threading.Lock()
        self._label_embeddings: dict[tuple[str, ...], torch.Tensor] = {}

    def __call__(self, batch: Batch) -> np.ndarray:
        """Logits of one batch as a float32 array (one device-to-host copy), padded label slots included."""
        width = self.label_slots or max(len(s.group.labels) for s in batch.sequences)
        with torch.inference_mode():
            ids = batch.input_ids.to(self.device, non_blocking=True)
            mask = batch.attention_mask.to(self.device, non_blocking=True)
            if self.architecture == "bi-encoder":
                logits = self._bi_encoder_logits(ids, mask, batch.sequences, width)
            elif self.architecture == "bi-encoder-fused":
                logits = fused_logits(self, ids, mask, batch.sequences, width)
            elif self.architecture in ENCODER_DECODERS:
                logits = encoder_decoder_logits(self, ids, mask, batch.sequences, width)
            else:
                # a fixed allocation: every slot takes part, the empty ones as in the reference
                slots = None if self.label_slots is None else ids.new_ones((ids.shape[0], width))
                logits = uni_encoder_logits(self.model, ids, mask, width, slots)
            return logits.float().cpu().numpy()

    def _bi_encoder_logits(
        self, ids: torch.Tensor, mask: torch.Tensor, sequences: list[EncodedSequence], width: int
    ) -> torch.Tensor:
        inner = self.inner
        hidden = inner.encoder_model(ids, attention_mask=mask)[0]
        text = inner.text_projector(masked_pool(self.pooling, hidden, mask))
        if self.config.normalize_features:
            text = torch.nn.functional.normalize(text, p=2, dim=-1, eps=inner.epsilon)
        classes = torch.zeros((len(sequences), width, text.shape[-1]), dtype=text.dtype, device=text.device)
        for i, s in enumerate(sequences):
            embeddings = self._label_embeddings_for(s.plan.labels)
            classes[i, : embeddings.shape[0]] = embeddings
        class_mask = torch.zeros((len(sequences), width), dtype=torch.long, device=text.device)
        for i, s in enumerate(sequences):
            class_mask[i, : len(s.plan.labels)] = 1
        logits = score(self.config.scorer_type, inner.scorer, text, classes, class_mask) * inner.logit_scale
        logits = torch.where(class_mask == 0, torch.full_like(logits, -1e3), logits)
        return calibrated(self.model, logits, text, classes, class_mask)

    def _label_embeddings_for(self, labels: tuple[str, ...]) -> torch.Tensor:
        """Bi-encoder label embeddings, computed once per label set, the way the reference computes them."""
        cached = self._label_embeddings.get(labels)
        if cached is not None:
            return cached
        tokens = self.label_tokenizer(
            list(labels), truncation=True, max_length=self.max_length, padding="longest", return_tensors="pt"
        )
        ids = tokens["input_ids"].to(self.device)[None]
        mask = tokens["attention_mask"].to(self.device)[None]
        with torch.inference_mode():
            embeddings = self.inner.encode_classes(
                ids, mask, torch.ones((1, len(labels)), device=self.device)
            )[0]
        with self._lock:
            self._label_embeddings[labels] = embeddings
        return embeddings


def uni_encoder_logits(
    model: Any, ids: torch.Tensor, mask: torch.Tensor, num_labels: int, slots: torch.Tensor | None = None
) -> torch.Tensor:
    """Logits of a uni-encoder for padded ids: the engine's pass, and the one fine-tune trains through.

    ``slots`` (batch, num_labels) marks the label slots a label-mixing scorer sees; by default each
    row's own labels. Unlike the reference's forward, text pooling is masked, so padding never changes
    a score.
    """
    inner, config = model.model, model.config
    hidden = _encoder_states(inner, config, ids, mask)
    classes, class_mask, text_states, text_mask = inner._extract_class_features(hidden, ids, mask, num_labels)
    pooled = masked_pool(config.pooling_strategy, text_states, text_mask)
    pooled = inner.text_projector(pooled)
    classes = inner.classes_projector(classes)
    if config.normalize_features:
        pooled = pooled / (pooled.norm(p=2, dim=-1, keepdim=True) + inner.epsilon)
        classes = classes / (classes.norm(p=2, dim=-1, keepdim=True) + inner.epsilon)
    slots = class_mask if slots is None else slots
    logits = score(config.scorer_type, inner.scorer, pooled, classes, slots, text_mask=text_mask)
    if config.normalize_features:
        logits = logits * inner.logit_scale
    return calibrated(model, logits, pooled, classes, class_mask)


def _encoder_states(inner: Any, config: Any, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    encoder = inner.encoder_model
    need_all = bool(getattr(config, "squeeze_layers", False)) or config.encoder_layer_id != -1
    if getattr(config, "use_segment_embeddings", False):
        embeds = encoder.get_input_embeddings()(ids) + inner.segment_embeddings(
            inner._create_segment_ids(ids)
        )
        outputs = encoder(inputs_embeds=embeds, attention_mask=mask, output_hidden_states=need_all)
    else:
        outputs = encoder(ids, attention_mask=mask, output_hidden_states=need_all)
    if getattr(config, "squeeze_layers", False):
        return inner.layer_wise_attention(outputs.hidden_states)
    if config.encoder_layer_id != -1:
        return outputs.hidden_states[config.encoder_layer_id]
    return outputs[0]
