"""Fine-tune a GLiClass uni-encoder on labelled rows, or bootstrap one from a plain encoder first.

The model classes are the reference package's (``gliclass.GLiClassModel``); the loop is a short one of
our own so that it is deterministic with a seed, restartable after each epoch, and shapes its inputs
exactly as the engine does at inference (labels first or text first by ``prompt_first``, labels never
truncated). Each row is shown its gold labels plus ``negatives`` sampled other labels (all of them when
``negatives`` is None), in a shuffled order.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gliclass_pipelines._common.checks import check_positive_int
from gliclass_pipelines._common.redaction import shorten
from gliclass_pipelines.core.encoding import TextEncoder
from gliclass_pipelines.errors import ConfigError
from gliclass_pipelines.io.ownership import claim_folder
from gliclass_pipelines.quality.rows import MAX_ROWS, Row, check_rows, read_rows  # noqa: F401
from gliclass_pipelines.quality.train_state import STATE_DIR, TrainingState, fingerprint
from gliclass_pipelines.taxonomy.labels import MARKERS
from gliclass_pipelines.taxonomy.taxonomy import Taxonomy

logger = logging.getLogger(__name__)

LABEL_MARK, SEP_MARK, EXAMPLE_MARK = MARKERS
LOSSES = ("bce", "focal")


@dataclass(frozen=True)
class FineTuneConfig:
    """Training settings; every one is checked before any weight is touched."""

    epochs: int = 3
    batch_size: int = 8
    encoder_lr: float = 3e-5
    head_lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: float = 0.1
    max_length: int = 256
    negatives: int | None = None
    loss: str = "bce"
    focal_alpha: float = 0.5
    focal_gamma: float = 2.0
    freeze_layers: int = 0
    seed: int = 0
    min_rows: int = 8
    dropout: bool = True
    device: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "max_length", "min_rows"):
            check_positive_int(getattr(self, name), name, optional=False)
        if self.negatives is not None and (isinstance(self.negatives, bool) or self.negatives < 0):
            raise ConfigError(f"negatives must be None (all labels) or >= 0, got {self.negatives!r}")
        if self.loss not in LOSSES:
            raise ConfigError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        for name in ("encoder_lr", "head_lr"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0 <= value < 1:
                raise ConfigError(f"{name} must be a learning rate in [0, 1), got {value!r}")
        if not 0 <= self.warmup < 1:
            raise ConfigError(f"warmup must be a fraction in [0, 1), got {self.warmup!r}")
        if self.freeze_layers < 0:
            raise ConfigError(f"freeze_layers must be >= 0, got {self.freeze_layers!r}")


@dataclass
class FineTuneResult:
    path: Path
    epoch_losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0
    resumed_from_epoch: int = 0


# --------------------------------------------------------------------------------------------------
# Checkpoints


def bootstrap(
    encoder: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    pooling: str = "first",
    scorer: str = "simple",
    prompt_first: bool = True,
    max_length: int | None = None,
    seed: int = 0,
    embed_class_token: bool = False,
    class_token_pooling: str = "average",
) -> Path:
    """Write a GLiClass uni-encoder checkpoint around a plain encoder (a local Hugging Face folder).

    Adds the ``<<LABEL>>``, ``<<SEP>>`` and ``<<EXAMPLE>>`` tokens and resizes the embeddings; the head
    is freshly initialised (seeded), so fine-tune it before use. By default a label is read as the mean
    of its word pieces after its ``<<LABEL>>`` marker (``embed_class_token=False``,
    ``class_token_pooling="average"``): words the pretrained encoder already knows, not the new marker
    token, which measured better on Debtags (``benchmarks/results/quality.md``).
    """
    import torch
    from gliclass import GLiClassModel, GLiClassModelConfig
    from transformers import AutoConfig, AutoTokenizer

    source = Path(encoder)
    if not (source / "config.json").is_file():
        raise ConfigError(f"encoder {shorten(str(source))!r} is not a model folder with a config.json")
    target = claim_folder(out, "bootstrap output")
    tokenizer = AutoTokenizer.from_pretrained(str(source), trust_remote_code=False)
    tokenizer.add_special_tokens({"additional_special_tokens": list(MARKERS)})
    if max_length:
        tokenizer.model_max_length = max_length
    ids = tokenizer.convert_tokens_to_ids(list(MARKERS))
    config = GLiClassModelConfig(
        encoder_config=AutoConfig.from_pretrained(str(source), trust_remote_code=False),
        encoder_model=str(source),
        class_token_index=ids[0],
        text_token_index=ids[1],
        example_token_index=ids[2],
        vocab_size=len(tokenizer),
        architecture_type="uni-encoder",
        prompt_first=prompt_first,
        pooling_strategy=pooling,
        scorer_type=scorer,
        problem_type="multi_label_classification",
        embed_class_token=embed_class_token,
        class_token_pooling=class_token_pooling,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GLiClassModel(config, from_pretrained=True)
    model.config.encoder_config.vocab_size = len(tokenizer)
    model.config.vocab_size = len(tokenizer)
    model.config.encoder_model_name = str(target)
    model.save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))
    return target


# --------------------------------------------------------------------------------------------------
# Training


class TrainingLayout:
    """Training sequences laid out by the engine's own :class:`TextEncoder`, so that a label set and a
    text make the same ids in training as in classification."""

    def __init__(self, tokenizer: Any, prompt_first: bool, max_length: int) -> None:
        self.encoder = TextEncoder(
            tokenizer, architecture="uni-encoder", prompt_first=prompt_first, max_length=max_length
        )
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def text_ids(self, texts: list[str]) -> list[list[int]]:
        return self.encoder.text_ids(texts, [""] * len(texts), cap=None)

    def sequence(self, text: list[int], labels: Sequence[str]) -> list[int]:
        groups = self.encoder.label_groups(tuple(labels), "", "")
        if len(groups) != 1:
            raise ConfigError(
                f"{len(labels)} labels do not fit one sequence of max_length={self.encoder.max_length} "
                "with room for the text; raise max_length or lower negatives"
            )
        return self.encoder.wrap(groups[0], text[: self.encoder.budget(groups[0])])


def _resolve_device(device: str) -> Any:
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _param_groups(model: Any, config: FineTuneConfig) -> list[dict[str, Any]]:
    encoder = model.model.encoder_model
    _freeze(encoder, config.freeze_layers)
    encoder_ids = {id(p) for p in encoder.parameters()}
    encoder_params = [p for p in encoder.parameters() if p.requires_grad]
    head_params = [p for p in model.parameters() if id(p) not in encoder_ids and p.requires_grad]
    return [
        {"params": encoder_params, "lr": config.encoder_lr},
        {"params": head_params, "lr": config.head_lr},
    ]


def _freeze(encoder: Any, layers: int) -> None:
    """Freeze the embeddings and the first ``layers`` transformer layers (nothing when 0)."""
    if not layers:
        return
    for p in encoder.get_input_embeddings().parameters():
        p.requires_grad_(False)
    blocks = next(
        (m for name, m in encoder.named_modules() if name.endswith("layer") or name == "layers"), None
    )
    if blocks is None:
        raise ConfigError("freeze_layers needs an encoder with a list of layers")
    for block in list(blocks)[:layers]:
        for p in block.parameters():
            p.requires_grad_(False)


def _loss(logits: Any, targets: Any, mask: Any, config: FineTuneConfig) -> Any:
    import torch.nn.functional as F

    per_label = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    if config.loss == "focal":
        p = logits.sigmoid()
        p_t = p * targets + (1 - p) * (1 - targets)
        alpha = config.focal_alpha * targets + (1 - config.focal_alpha) * (1 - targets)
        per_label = alpha * (1 - p_t) ** config.focal_gamma * per_label
    return (per_label * mask).sum() / mask.sum().clamp_min(1)


def _batches(lengths: Sequence[int], size: int, rng: random.Random, pool: int = 32) -> list[list[int]]:
    """Shuffled batches of rows of similar length (less padding): rows are shuffled, sorted by length
    within pools of ``pool`` batches, cut into batches, and the batches shuffled again."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    batches = []
    for start in range(0, len(order), size * pool):
        chunk = sorted(order[start : start + size * pool], key=lambda i: lengths[i])
        batches += [chunk[i : i + size] for i in range(0, len(chunk), size)]
    rng.shuffle(batches)
    return batches


def _row_labels(
    gold: tuple[str, ...], labels: Sequence[str], negatives: int | None, rng: random.Random
) -> list[str]:
    others = [label for label in labels if label not in gold]
    if negatives is not None and negatives < len(others):
        others = rng.sample(others, negatives)
    chosen = list(gold) + others
    rng.shuffle(chosen)
    return chosen


def fine_tune(
    model: str | os.PathLike[str],
    rows: Sequence[Row] | str | os.PathLike[str] | Any,
    out: str | os.PathLike[str],
    *,
    taxonomy: Taxonomy | Sequence[str] | None = None,
    config: FineTuneConfig | None = None,
) -> FineTuneResult:
    """Train the GLiClass checkpoint at ``model`` on ``rows`` and save the result into ``out``.

    ``rows`` are (text, labels) pairs, a Parquet/JSONL/CSV file, or a Spark DataFrame with ``text`` and
    ``labels`` columns (at most ``MAX_ROWS`` of them reach the driver; sample a larger one first).

    ``out`` then loads with ``Classifier.load(out)``. After each epoch the training state is saved in
    ``out/.finetune-state``; running again with the same rows and settings resumes after the last
    finished epoch. The state is removed when training ends.
    """
    import torch
    from gliclass import GLiClassModel
    from transformers import AutoTokenizer

    config = config or FineTuneConfig()
    rows, taxonomy, source = _checked_inputs(model, rows, out, taxonomy, config)
    target = claim_folder(out, "fine-tune output")
    torch.manual_seed(config.seed)
    net = GLiClassModel.from_pretrained(str(source), trust_remote_code=False)
    if net.config.architecture_type != "uni-encoder":
        raise ConfigError(f"fine-tune trains uni-encoder checkpoints, not {net.config.architecture_type!r}")
    tokenizer = AutoTokenizer.from_pretrained(str(source), trust_remote_code=False)
    result = FineTuneResult(target)
    _train(net, TrainingLayout(tokenizer, bool(net.config.prompt_first), config.max_length), rows,
           list(taxonomy.labels), config, result)  # fmt: skip
    net.config.encoder_model_name = str(target)
    net.save_pretrained(str(target))
    tokenizer.model_max_length = config.max_length
    tokenizer.save_pretrained(str(target))
    (target / "finetune.json").write_text(
        json.dumps({"config": asdict(config), "labels": list(taxonomy.labels), "rows": len(rows),
                    "epoch_losses": result.epoch_losses, "seconds": result.seconds}, indent=2),
        encoding="utf-8",
    )  # fmt: skip
    shutil.rmtree(target / STATE_DIR, ignore_errors=True)
    return result


def _checked_inputs(
    model: str | os.PathLike[str],
    rows: Any,
    out: str | os.PathLike[str],
    taxonomy: Taxonomy | Sequence[str] | None,
    config: FineTuneConfig,
) -> tuple[list[Row], Taxonomy, Path]:
    rows = read_rows(rows)
    if taxonomy is None:
        taxonomy = Taxonomy.from_labels(sorted({label for _, labels in rows for label in labels}) or ["?"])
    taxonomy = Taxonomy.coerce(taxonomy)
    check_rows(rows, taxonomy, config.min_rows)
    source = Path(model).expanduser()
    if not (source / "config.json").is_file():
        raise ConfigError(f"model {shorten(str(source))!r} is not a local GLiClass checkpoint folder")
    if Path(out).expanduser().resolve() == source.resolve():
        raise ConfigError(f"output {shorten(str(source))!r} is the starting checkpoint; give a new folder")
    return rows, taxonomy, source


def _train(net: Any, layout: TrainingLayout, rows: list[Row], labels: list[str], config: FineTuneConfig,
           result: FineTuneResult) -> None:  # fmt: skip
    """The epochs still to run (a saved state for this very run resumes), saving the state after each."""
    import torch
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    device = _resolve_device(config.device)
    net.to(device).train(config.dropout)
    texts = layout.text_ids([text for text, _ in rows])
    optimizer = torch.optim.AdamW(_param_groups(net, config), weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(rows) / config.batch_size)
    total = steps_per_epoch * config.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(config.warmup * total), total)
    state = TrainingState(result.path, fingerprint(config, rows, labels), net, optimizer, scheduler)
    start = state.resume(result)
    started = time.perf_counter()
    bar = tqdm(total=total, initial=start * steps_per_epoch, disable=not config.progress, desc="fine-tune")
    for epoch in range(start, config.epochs):
        rng = random.Random(f"{config.seed}-{epoch}")
        torch.manual_seed(config.seed * 1000 + epoch)
        total_loss = 0.0
        for batch in _batches([len(t) for t in texts], config.batch_size, rng):
            loss = _step(net, layout, texts, rows, labels, batch, rng, config, device)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            total_loss += loss.item() * len(batch)
            result.steps += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
        result.epoch_losses.append(total_loss / len(rows))
        logger.info("epoch %d: mean loss %.4f", epoch + 1, result.epoch_losses[-1])
        if epoch + 1 < config.epochs:
            state.save(epoch + 1, result)
    bar.close()
    result.seconds += time.perf_counter() - started
    net.eval()


def _step(net: Any, encoder: TrainingLayout, texts: list[list[int]], rows: Sequence[Row], labels: list[str],
          batch: list[int], rng: random.Random, config: FineTuneConfig, device: Any) -> Any:  # fmt: skip
    shown = [_row_labels(rows[i][1], labels, config.negatives, rng) for i in batch]
    return _batch_loss(
        net, encoder, [texts[i] for i in batch], [rows[i][1] for i in batch], shown, config, device
    )


def _batch_loss(net: Any, encoder: TrainingLayout, texts: list[list[int]], golds: list[tuple[str, ...]],
                shown: list[list[str]], config: FineTuneConfig, device: Any) -> Any:  # fmt: skip
    import torch

    from gliclass_pipelines.core.forward import uni_encoder_logits

    seqs = [encoder.sequence(text, row_labels) for text, row_labels in zip(texts, shown)]
    width, slots = max(map(len, seqs)), max(map(len, shown))
    ids = torch.full((len(seqs), width), encoder.pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    targets = torch.zeros((len(seqs), slots))
    label_mask = torch.zeros((len(seqs), slots))
    for r, (seq, row_labels, gold) in enumerate(zip(seqs, shown, golds)):
        ids[r, : len(seq)] = torch.tensor(seq)
        mask[r, : len(seq)] = 1
        label_mask[r, : len(row_labels)] = 1
        for k, label in enumerate(row_labels):
            targets[r, k] = float(label in gold)
    logits = uni_encoder_logits(net, ids.to(device), mask.to(device), slots)
    return _loss(logits[:, :slots].float(), targets.to(device), label_mask.to(device), config)
