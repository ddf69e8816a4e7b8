"""Shared pieces of the benchmark harness: corpora, label sets, random checkpoints, FLOP counts, timers.

Checkpoints have the published *shapes* but random weights (no network here). Only the shapes matter
for speed: the matmul FLOPs per token are set by hidden size, layers and feed-forward width, and the
token counts by the tokenizer. The tokenizer is a WordPiece vocabulary trained on both corpora, so
the texts split into about as many tokens as a real 30-50k English vocabulary gives.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# $BENCH_DATA; ../shared/data beside the checkout; shared/data inside it (device machines); else the
# tests' small cut of the same corpora, so a fresh clone can still run the harness.
DATA_DIRS = [Path(p) for p in os.environ.get("BENCH_DATA", "").split(os.pathsep) if p]
DATA_DIRS += [ROOT.parent / "shared" / "data", ROOT / "shared" / "data", ROOT / "tests" / "data"]
CACHE = ROOT / ".cache" / "bench"
CORPORA = {"debian": "debian_packages.jsonl", "pypi": "pypi_summaries.jsonl"}
LABEL_TOKEN, SEP_TOKEN, EXAMPLE_TOKEN = "<<LABEL>>", "<<SEP>>", "<<EXAMPLE>>"
NLI_LABELS = {0: "contradiction", 1: "neutral", 2: "entailment"}
BUILDER_VERSION = 3  # bump to rebuild cached checkpoints

# The `section` values of debian_packages.jsonl, most frequent first (fixed here: no data needed).
DEBIAN_SECTIONS = (
    "libs", "libdevel", "python", "perl", "doc", "devel", "utils", "haskell", "net", "golang", "rust",
    "javascript", "java", "science", "ruby", "admin", "gnu-r", "games", "text", "x11", "php", "misc",
    "sound", "fonts", "graphics", "ocaml", "lisp", "web", "math", "localization", "gnome", "editors",
    "interpreters", "metapackages", "introspection", "mail", "kde", "tasks", "cli-mono", "electronics",
    "database", "video", "debug", "otherosfs", "hamradio", "httpd", "comm", "tex", "vcs", "oldlibs",
    "kernel", "xfce", "gnustep", "shells", "embedded", "news", "zope", "education",
)  # fmt: skip
# Topic words that read like PyPI classifiers; they pad the 58 Debian sections up to 128 labels.
EXTRA_LABELS = (
    "machine learning", "deep learning", "natural language processing", "computer vision",
    "data visualization", "web framework", "command-line tool", "testing framework",
    "database driver", "object-relational mapper", "http client", "asynchronous networking",
    "cloud storage", "container orchestration", "configuration management", "continuous integration",
    "static analysis", "code formatter", "package manager", "build system", "documentation generator",
    "logging", "monitoring", "cryptography", "authentication", "security scanner", "compression",
    "serialization", "image processing", "audio processing", "video streaming", "scientific computing",
    "bioinformatics", "astronomy", "chemistry", "geospatial", "finance", "accounting", "e-commerce",
    "chat bot", "large language models", "agents", "robotics", "embedded systems", "hardware drivers",
    "operating system", "file system", "virtualization", "desktop environment", "text editor",
    "terminal emulator", "spreadsheet", "markdown", "static site generator", "template engine",
    "message queue", "distributed computing", "data pipeline", "workflow automation", "scraping",
    "search engine", "recommendation system", "time series", "statistics", "optimization",
    "plugin", "api wrapper", "sdk", "game engine", "education software",
)  # fmt: skip


@dataclass(frozen=True)
class Shape:
    """A published model shape. edge-v3.0 is an Ettin/ModernBERT encoder, base-v3.0 is DeBERTa-v3-base."""

    name: str
    backbone: str
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int
    pooling: str = "first"
    scorer: str = "mlp"
    prompt_first: bool = True


SHAPES = {
    # ModernBERT/Ettin-32m geometry: GLU feed-forward (Wi: 384 -> 2*576), 6 heads; 32k WordPiece vocab
    # brings the total to the published ~25M parameters.
    "edge": Shape("edge", "modernbert", 384, 10, 6, 576, 32000),
    # DeBERTa-v3-base geometry: 768 wide, 12 layers, 12 heads, 3072 feed-forward (vocab 128k published,
    # 32k here: the embedding table costs memory, not FLOPs).
    "base": Shape("base", "deberta-v2", 768, 12, 12, 3072, 32000),
    # for --quick smoke runs only: seconds, not minutes
    "tiny": Shape("tiny", "modernbert", 128, 2, 4, 256, 4000),
}


# ----------------------------------------------------------------------------------------------------
# Data


def corpus_path(corpus: str) -> Path | None:
    return next((d / CORPORA[corpus] for d in DATA_DIRS if (d / CORPORA[corpus]).is_file()), None)


def read_corpus(corpus: str) -> list[dict[str, Any]]:
    path = corpus_path(corpus)
    if path is None:
        searched = ", ".join(str(d) for d in DATA_DIRS)
        raise FileNotFoundError(f"{CORPORA[corpus]} not found in {searched}; set BENCH_DATA to its folder")
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def corpus_or_synthetic(corpora: list[str], n: int) -> list[str]:
    """Every text of the corpora found; synthetic texts where none is (said on stderr)."""
    found = [c for c in corpora if corpus_path(c) is not None]
    if not found:
        print(f"no corpus found in {', '.join(map(str, DATA_DIRS))}: using synthetic texts", file=sys.stderr)
        return synthetic_texts(n)
    return [r["text"] for c in found for r in read_corpus(c)]


def synthetic_texts(n: int, seed: int = 0) -> list[str]:
    """Stand-in texts with Debian-like lengths (median ~50 words, long tail), where the data is missing."""
    rng = random.Random(seed)
    words = [w for label in EXTRA_LABELS for w in label.split()] + ["the", "a", "of", "and", "for", "with"]
    lengths = [max(3, min(2000, int(rng.lognormvariate(3.9, 0.6)))) for _ in range(n)]
    return [" ".join(rng.choice(words) for _ in range(k)) + "." for k in lengths]


def sample_texts(corpus: str, n: int, seed: int = 0) -> list[str]:
    """n texts drawn with a fixed seed (the files are in random order already; the seed keeps it so)."""
    rows = read_corpus(corpus)
    random.Random(seed).shuffle(rows)
    return [r["text"] for r in rows[:n]]


def debian_sections() -> list[str]:
    """The 58 Debian sections of debian_packages.jsonl, most frequent first."""
    return list(DEBIAN_SECTIONS)


def label_set(n: int) -> list[str]:
    """n labels: the Debian sections by frequency, then PyPI-ish topics, then 'section: X' variants."""
    pool = debian_sections() + list(EXTRA_LABELS)
    pool += [f"section: {s}" for s in debian_sections()]
    if n > len(pool):
        raise ValueError(f"at most {len(pool)} labels are available, asked for {n}")
    return pool[:n]


# ----------------------------------------------------------------------------------------------------
# Checkpoints


def build_tokenizer(vocab: int, texts: Iterable[str], backbone: str) -> Any:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    trainer = trainers.WordPieceTrainer(vocab_size=vocab, special_tokens=special, show_progress=False)
    backend.train_from_iterator(texts, trainer=trainer)
    cls_id, sep_id = backend.token_to_id("[CLS]"), backend.token_to_id("[SEP]")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    names = ["input_ids", "attention_mask"]
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        cls_token="[CLS]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        unk_token="[UNK]",
        mask_token="[MASK]",
        model_max_length=1024,
        model_input_names=names if backbone == "modernbert" else ["input_ids", "token_type_ids", *names[1:]],
    )
    tokenizer.add_special_tokens({"additional_special_tokens": [LABEL_TOKEN, SEP_TOKEN, EXAMPLE_TOKEN]})
    return tokenizer


def backbone_config(shape: Shape, tokenizer: Any) -> Any:
    common = {
        "vocab_size": len(tokenizer),
        "hidden_size": shape.hidden,
        "num_hidden_layers": shape.layers,
        "num_attention_heads": shape.heads,
        "intermediate_size": shape.intermediate,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if shape.backbone == "modernbert":
        from transformers import ModernBertConfig

        return ModernBertConfig(
            **common,
            max_position_embeddings=8192,
            cls_token_id=tokenizer.cls_token_id,
            sep_token_id=tokenizer.sep_token_id,
            bos_token_id=tokenizer.cls_token_id,
            eos_token_id=tokenizer.sep_token_id,
        )
    from transformers import DebertaV2Config

    return DebertaV2Config(
        **common,
        max_position_embeddings=512,
        type_vocab_size=0,
        relative_attention=True,
        position_biased_input=False,
        pos_att_type=["p2c", "c2p"],
        position_buckets=256,
        max_relative_positions=-1,
        norm_rel_ebd="layer_norm",
        share_att_key=True,
        layer_norm_eps=1e-7,
    )


def _stamp(shape: Shape, kind: str) -> dict[str, Any]:
    return {"builder": BUILDER_VERSION, "kind": kind, **asdict(shape)}


def _cached(directory: Path, stamp: dict[str, Any]) -> bool:
    path = directory / "bench_stamp.json"
    return path.is_file() and json.loads(path.read_text()) == stamp


def shared_tokenizer(shape: Shape) -> Any:
    from transformers import AutoTokenizer

    directory = CACHE / f"tokenizer-{shape.backbone}-{shape.vocab}"
    stamp = {"builder": BUILDER_VERSION, "vocab": shape.vocab, "backbone": shape.backbone}
    if not _cached(directory, stamp):
        texts = corpus_or_synthetic(list(CORPORA), 40000)[:: 1 if shape.vocab > 8000 else 8]
        build_tokenizer(shape.vocab, texts, shape.backbone).save_pretrained(directory)
        (directory / "bench_stamp.json").write_text(json.dumps(stamp))
    return AutoTokenizer.from_pretrained(directory, trust_remote_code=False)


def gliclass_checkpoint(shape: Shape) -> Path:
    """A random GLiClass uni-encoder of this shape, built once and cached under .cache/bench."""
    directory = CACHE / f"gliclass-{shape.name}"
    stamp = _stamp(shape, "gliclass")
    if _cached(directory, stamp):
        return directory
    import torch
    from gliclass import GLiClassModel, GLiClassModelConfig

    tokenizer = shared_tokenizer(shape)
    marks = tokenizer.convert_tokens_to_ids([LABEL_TOKEN, SEP_TOKEN, EXAMPLE_TOKEN])
    config = GLiClassModelConfig(
        encoder_config=backbone_config(shape, tokenizer),
        encoder_model=str(directory),
        architecture_type="uni-encoder",
        prompt_first=shape.prompt_first,
        pooling_strategy=shape.pooling,
        scorer_type=shape.scorer,
        scorer_mlp_hidden_size=shape.hidden,
        class_token_index=marks[0],
        text_token_index=marks[1],
        example_token_index=marks[2],
        vocab_size=len(tokenizer),
        problem_type="multi_label_classification",
    )
    torch.manual_seed(0)
    model = GLiClassModel(config).eval()
    _redraw(model)
    _spread_logits(model, tokenizer)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    (directory / "bench_stamp.json").write_text(json.dumps(stamp))
    return directory


def _redraw(model: Any) -> None:
    """Variance-preserving random weights (Linear ~ N(0, 1/fan_in), embeddings ~ N(0, 1)).

    The default init (std 0.02) collapses every token to nearly the same state after a few layers, so the
    labels' logits differ by ~1e-4 and only a huge head scale spreads them, which makes any precision
    comparison (bf16 against fp32) meaningless. With these weights a ~10x head scale suffices.
    """
    import math

    import torch

    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.normal_(0.0, 1.0 / math.sqrt(module.in_features), generator=generator)
            elif isinstance(module, torch.nn.Embedding):
                module.weight.normal_(0.0, 1.0, generator=generator)


def _spread_logits(model: Any, tokenizer: Any) -> None:
    """Scale the scorer's last layer so that random logits spread (std ~1.5), like a trained model's."""
    import torch

    labels = ["libs", "python", "games", "science"]
    prompt = "".join(LABEL_TOKEN + x for x in labels) + SEP_TOKEN
    texts = ["A library for parsing files.", "A puzzle game with many levels.", "Tools for astronomy."]
    inputs = tokenizer([prompt + t for t in texts], padding="longest", return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs, max_num_classes=len(labels)).logits
        last = [m for m in model.model.scorer.modules() if isinstance(m, torch.nn.Linear)][-1]
        scale = 1.5 / max(float(logits.std()), 1e-6)
        last.bias.sub_(float(logits.mean())).mul_(scale)
        last.weight.mul_(scale)


def cross_encoder_checkpoint(shape: Shape) -> Path:
    """A random NLI cross-encoder (3 labels) with the same backbone shape and tokenizer."""
    directory = CACHE / f"nli-{shape.name}"
    stamp = _stamp(shape, "nli")
    if _cached(directory, stamp):
        return directory
    import torch
    from transformers import AutoModelForSequenceClassification

    tokenizer = shared_tokenizer(shape)
    config = backbone_config(shape, tokenizer)
    config.num_labels = 3
    config.id2label = dict(NLI_LABELS)
    config.label2id = {v: k for k, v in NLI_LABELS.items()}
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config).eval()
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    (directory / "bench_stamp.json").write_text(json.dumps(stamp))
    return directory


# ----------------------------------------------------------------------------------------------------
# FLOPs


def encoder_matmul_params(encoder: Any) -> int:
    """Weights of every nn.Linear in the encoder: each costs 2 FLOPs per token (embeddings cost none)."""
    import torch

    return sum(m.weight.numel() for m in encoder.modules() if isinstance(m, torch.nn.Linear))


def useful_flops(lengths: Iterable[int], matmul_params: int, layers: int, hidden: int) -> float:
    """2 * P_matmul * real_tokens + 4 * L * d * n^2 per sequence (QK^T and AV), real lengths only.

    Padding, the GLiClass head (projectors and scorer, < 1% here) and softmax/norm work are not counted.
    """
    lengths = list(lengths)
    return 2.0 * matmul_params * sum(lengths) + 4.0 * layers * hidden * sum(n * n for n in lengths)


def matmul_peak(threads: int, size: int = 2048, repeats: int = 5) -> dict[str, float]:
    """Float32 FLOP/s of a size x size torch.mm on `threads` threads, best of `repeats`: per wall second,
    and per CPU second (what one core delivers while it runs; robust when other jobs share the cores)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    runs = [clocked(lambda: torch.mm(a, b)) for _ in range(repeats)]
    torch.set_num_threads(before)
    flops = 2.0 * size**3
    return {"wall": flops / min(w for w, _ in runs), "cpu": flops / min(c for _, c in runs)}


# ----------------------------------------------------------------------------------------------------
# Timing


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def clocked(fn: Callable[[], Any]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all threads) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def adapter_heads(hidden: int) -> int:
    return 4 if hidden % 4 == 0 else 2


def adapter_model(texts: list[str], hidden: int, layers: int, name: str) -> str:
    """A random-weight checkpoint of the given width and depth, in a fresh temporary folder."""
    import tempfile

    from gliclass_pipelines.testing.checkpoints import make_tiny_checkpoint

    heads = 4 if hidden % 4 == 0 else 2
    folder = Path(tempfile.mkdtemp(prefix=f"bench-{name}-")) / "model"
    return str(
        make_tiny_checkpoint(folder, hidden_size=hidden, num_layers=layers, num_heads=heads, corpus=texts)
    )
