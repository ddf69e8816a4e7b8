"""Tiny random GLiClass checkpoints for tests, built offline in a fraction of a second.

``make_tiny_checkpoint`` writes a directory that loads through exactly the code path of a Hub model id::

    model = gliclass.GLiClassModel.from_pretrained(path)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)

The weights are random but deliberately *not* the library's default initialisation: a default init gives
every label a score of about 0.5, so a test comparing two code paths against each other could never fail.
Here every weight matrix is re-drawn with a larger spread (so that attention mixes the label words into the
label tokens), and the scorer's output is then rescaled on a fixed probe batch so that logits centre on 0
with a standard deviation of about 1.5: scores differ clearly between labels and between texts while
staying away from 0 and 1, for every backbone, pooling and scorer.

``VARIANTS`` is a covering matrix of backbones, architectures, ``prompt_first``, pooling strategies and
scorers (every value of every axis appears at least once) for parametrized tests::

    @pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
    def test_my_code(variant, tmp_path):
        path = make_tiny_checkpoint(tmp_path / "model", **variant)

Only the standard library and the marker tokens (gliclass_pipelines.taxonomy) are imported at module
level; torch, tokenizers, transformers and gliclass load when a checkpoint is built.
"""

from __future__ import annotations

import os
import pathlib
import string
from collections.abc import Iterable, Mapping
from typing import Any

from gliclass_pipelines.taxonomy import LABEL_MARK, MARKERS, SEP_MARK

__all__ = [
    "ARCHITECTURES",
    "BACKBONES",
    "POOLINGS",
    "SCORERS",
    "VARIANTS",
    "make_tiny_checkpoint",
    "variant_id",
]

_BERT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

BACKBONES = ("bert", "deberta-v2", "modernbert")
ARCHITECTURES = ("uni-encoder", "bi-encoder")
POOLINGS = ("first", "avg", "max", "last")
SCORERS = ("simple", "weighted-dot", "mlp")

_TOKENIZER_VOCAB_SIZE = 1500
_SCORER_MLP_HIDDEN_SIZE = 64


def _variant(
    backbone: str, architecture: str, prompt_first: bool, pooling: str, scorer: str
) -> dict[str, Any]:
    return {
        "backbone": backbone,
        "architecture": architecture,
        "prompt_first": prompt_first,
        "pooling": pooling,
        "scorer": scorer,
    }


# A covering set, not the full product: each backbone, architecture, pooling and scorer appears at least
# once, and each pooling appears with prompt_first both True and False in the uni-encoder (where the label
# prompt's position changes what "first" and "last" pool). The plain bi-encoder never puts labels into the
# text, so prompt_first has no effect there and stays True.
VARIANTS: tuple[dict[str, Any], ...] = (
    _variant("deberta-v2", "uni-encoder", True, "first", "simple"),
    _variant("deberta-v2", "uni-encoder", False, "first", "mlp"),
    _variant("deberta-v2", "uni-encoder", True, "avg", "simple"),
    _variant("deberta-v2", "uni-encoder", False, "max", "weighted-dot"),
    _variant("modernbert", "uni-encoder", True, "first", "simple"),
    _variant("modernbert", "uni-encoder", False, "avg", "mlp"),
    _variant("modernbert", "uni-encoder", True, "last", "weighted-dot"),
    _variant("modernbert", "uni-encoder", False, "max", "weighted-dot"),
    _variant("bert", "uni-encoder", True, "max", "mlp"),
    _variant("bert", "uni-encoder", False, "avg", "weighted-dot"),
    _variant("bert", "uni-encoder", False, "last", "simple"),
    _variant("bert", "uni-encoder", True, "first", "weighted-dot"),
    _variant("deberta-v2", "bi-encoder", True, "last", "mlp"),
    _variant("modernbert", "bi-encoder", True, "avg", "simple"),
    _variant("bert", "bi-encoder", True, "max", "weighted-dot"),
)

_SHORT_NAMES = {"deberta-v2": "deberta", "uni-encoder": "uni", "bi-encoder": "bi", "weighted-dot": "wdot"}
_ID_DEFAULTS = {"backbone": "bert", "architecture": "uni-encoder", "pooling": "first", "scorer": "simple"}


def variant_id(variant: Mapping[str, Any]) -> str:
    """A short id for one entry of ``VARIANTS``, e.g. ``"deberta-uni-tf-max-wdot"`` (``pf``: prompt first,
    ``tf``: text first); use it as ``ids=variant_id`` in ``pytest.mark.parametrize``."""

    def short(key: str) -> str:
        value = str(variant.get(key, _ID_DEFAULTS[key]))
        return _SHORT_NAMES.get(value, value)

    order = "pf" if variant.get("prompt_first", True) else "tf"
    return "-".join([short("backbone"), short("architecture"), order, short("pooling"), short("scorer")])


# A few hundred words of varied English, enough for a WordPiece vocabulary of well over a thousand entries
# in which common words (and typical label names) are single tokens.
_CORPUS = (
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Stocks fell sharply on Monday after the central bank raised interest rates again.",
    "Investors worried that inflation would keep rising through the winter months.",
    "The company reported record profits and announced a new dividend for shareholders.",
    "Our startup raised twenty million dollars to build cheaper batteries for electric cars.",
    "The home team won the championship in overtime with a brilliant goal from the captain.",
    "Fans celebrated in the streets until midnight after the final whistle.",
    "The coach praised the defense but said the players must improve their passing.",
    "She broke the national record in the marathon and qualified for the olympic games.",
    "The tennis match lasted five hours before rain stopped play at the stadium.",
    "Parliament passed the new budget after a long debate about taxes and public spending.",
    "The president met foreign leaders to discuss trade, security and climate policy.",
    "Voters will choose a new mayor next month in a close and bitter election.",
    "The senator criticized the government for ignoring the rural economy.",
    "Protesters gathered outside the court to demand justice and equal rights.",
    "Scientists discovered a new species of frog in the tropical rainforest.",
    "The telescope captured images of a distant galaxy formed billions of years ago.",
    "Researchers found that regular exercise improves memory and reduces stress.",
    "A vaccine trial showed strong protection against the virus in older patients.",
    "The hospital opened a new clinic for children with heart disease.",
    "Doctors recommend drinking water, sleeping well and eating fresh vegetables.",
    "Engineers released a software update that fixes security bugs in the browser.",
    "The new phone has a faster processor, a better camera and a bigger battery.",
    "Artificial intelligence models can now translate speech between many languages.",
    "Hackers stole personal data from millions of customers of the online store.",
    "The cloud service was down for three hours because of a network failure.",
    "Programmers write code, test it carefully and deploy it to production servers.",
    "This restaurant serves delicious pasta, fresh bread and excellent coffee.",
    "The soup was cold, the waiter was rude and the bill was far too expensive.",
    "I loved the movie, the acting was wonderful and the music was beautiful.",
    "The concert was boring and the sound was terrible, so we left early.",
    "The hotel room was clean and quiet, with a lovely view of the mountains.",
    "Our flight was delayed for six hours and the airline lost my luggage.",
    "We traveled by train across the country and visited small villages and old castles.",
    "The weather forecast says heavy snow and strong winds will hit the north tomorrow.",
    "A hot and sunny summer caused drought, wildfires and water shortages.",
    "Farmers hope that spring rain will help the wheat and corn harvest.",
    "The museum displays ancient paintings, sculptures and rare books from the library.",
    "Students prepared for their exams in mathematics, history, chemistry and physics.",
    "The teacher explained the lesson slowly so that every child could understand.",
    "The university announced scholarships for students from poor families.",
    "He bought a used car, but the engine broke down after only two weeks.",
    "Please send the invoice by email and call me if you have any questions.",
    "The package arrived damaged, and customer support has not answered my complaint.",
    "Thank you for the fast delivery, the product works perfectly and looks great.",
    "The author's latest novel tells the story of a family during the war.",
    "The band will release a new album and start a world tour in autumn.",
    "The police arrested two suspects after a robbery at the jewelry shop.",
    "Firefighters rescued a cat from the roof of a burning building downtown.",
    "The city plans to build new bike lanes, parks and affordable housing.",
    "Oil prices jumped after the storm damaged refineries along the coast.",
    "The bank offers loans with low interest to small businesses and farmers.",
    "Unemployment dropped to its lowest level in a decade as factories hired workers.",
    "The government will invest in solar, wind and nuclear energy to cut emissions.",
    "Climate change is melting glaciers and raising sea levels around the world.",
    "The earthquake destroyed bridges and roads, and thousands of people lost their homes.",
    "Volunteers delivered food, blankets and medicine to families in the flooded region.",
    "My grandmother bakes apple pie every sunday and invites the whole neighborhood.",
    "The puppy chewed my shoes, but it is still the sweetest dog I have ever had.",
    "Gardening is a relaxing hobby, and tomatoes grow well in warm sunny places.",
    "The chess champion defended her title against a young challenger from abroad.",
    "Basketball, football, baseball, hockey, cricket, rugby, golf and swimming are popular sports.",
    "Labels such as sports, politics, business, technology, science, health, entertainment and travel.",
    "Other categories include finance, economy, education, weather, food, crime, environment and culture.",
    "Sentiment can be positive, negative or neutral.",
    "Emotions include joy, anger, fear, sadness, disgust and surprise.",
    "Urgent requests, spam messages, billing questions, refunds, shipping problems and account issues.",
    "Some reviews are happy, some are angry, and some are simply confused or disappointed.",
    "One, two, three, four, five, six, seven, eight, nine, ten, hundred, thousand, million.",
    "Monday, Tuesday, Wednesday, Thursday, Friday, Saturday and Sunday; January, June and December.",
    "Red, orange, yellow, green, blue, purple, black, white and gray are common colors.",
    "What happened, who did it, where, when, why and how did the story end?",
    "It is not clear whether the new rules will help or hurt ordinary people.",
    "After years of research, the team finally published their results in a famous journal.",
    "Smart watches track your heart rate, your steps and how long you sleep each night.",
    "The game developer announced a sequel with better graphics and an open world.",
    "Electric scooters are cheap and convenient, yet many cities want to ban them.",
    "The judge sentenced the former minister to prison for corruption and fraud.",
    "Diplomats signed a peace agreement that ends a conflict lasting several years.",
    "Tourists crowded the beaches, markets and museums during the summer festival.",
    "Some text about something happening somewhere, written quickly by someone.",
)


def _learn_wordpiece_vocab(corpus: Iterable[str], size: int) -> dict[str, int]:
    """A WordPiece vocabulary of at most ``size`` entries, learned deterministically from ``corpus``.

    tokenizers' WordPieceTrainer breaks ties between equally frequent merges in hash-map order, which
    changes from one call to the next, so the same corpus would give a different vocabulary (and the same
    seed a different checkpoint) every time. Instead: the special tokens, every character alone and as a
    ``##`` continuation (so no ASCII word becomes [UNK]), the corpus's words, then frequent word-initial and
    ``##`` word-final pieces; by frequency, ties broken alphabetically.
    """
    from collections import Counter

    from tokenizers import normalizers, pre_tokenizers

    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words: Counter[str] = Counter()
    for text in corpus:
        words.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    pieces: Counter[str] = Counter()
    for word, count in words.items():
        for end in range(2, len(word)):
            pieces[word[:end]] += count
        for start in range(1, len(word) - 1):
            pieces["##" + word[start:]] += count

    alphabet = sorted(set(string.ascii_lowercase + string.digits + string.punctuation).union(*words))
    tokens = [*_BERT_SPECIAL_TOKENS, *alphabet, *(f"##{char}" for char in alphabet)]
    seen = set(tokens)
    candidates = sorted(words.items(), key=_by_frequency) + sorted(pieces.items(), key=_by_frequency)
    for candidate, _ in candidates:
        if len(tokens) >= size:
            break
        if candidate not in seen:
            tokens.append(candidate)
            seen.add(candidate)
    return {token: index for index, token in enumerate(tokens)}


def _by_frequency(item: tuple[str, int]) -> tuple[int, str]:
    return -item[1], item[0]


def _build_tokenizer(corpus: Iterable[str], max_length: int, backbone: str) -> Any:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = _learn_wordpiece_vocab(corpus, _TOKENIZER_VOCAB_SIZE)
    backend = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    cls_id, sep_id = backend.token_to_id("[CLS]"), backend.token_to_id("[SEP]")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )

    # Like the real ones: BERT and DeBERTa tokenizers also return token_type_ids, which the GLiClass
    # pipeline passes on to the backbone; ModernBERT's tokenizer does not (its model would ignore them).
    if backbone == "modernbert":
        model_input_names = ["input_ids", "attention_mask"]
    else:
        model_input_names = ["input_ids", "token_type_ids", "attention_mask"]
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        cls_token="[CLS]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        unk_token="[UNK]",
        mask_token="[MASK]",
        model_max_length=max_length,
        model_input_names=model_input_names,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": list(MARKERS)})
    return tokenizer


def _backbone_config(
    backbone: str,
    tokenizer: Any,
    *,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    max_length: int,
) -> Any:
    common = {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": num_heads,
        "intermediate_size": 2 * hidden_size,
        "max_position_embeddings": max_length,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if backbone == "bert":
        from transformers import BertConfig

        return BertConfig(**common, type_vocab_size=2)
    if backbone == "deberta-v2":
        from transformers import DebertaV2Config

        # shaped like DeBERTa-v3: relative attention only, log buckets, shared keys
        return DebertaV2Config(
            **common,
            type_vocab_size=0,
            relative_attention=True,
            position_biased_input=False,
            pos_att_type=["p2c", "c2p"],
            position_buckets=64,
            max_relative_positions=-1,
            norm_rel_ebd="layer_norm",
            share_att_key=True,
            layer_norm_eps=1e-7,
        )
    if backbone == "modernbert":
        from transformers import ModernBertConfig

        return ModernBertConfig(
            **common,
            cls_token_id=tokenizer.cls_token_id,
            sep_token_id=tokenizer.sep_token_id,
            bos_token_id=tokenizer.cls_token_id,
            eos_token_id=tokenizer.sep_token_id,
            local_attention=64,
            global_attn_every_n_layers=2,
        )
    raise ValueError(f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")


def _redraw_weights(model: Any, *, seed: int, weight_std: float) -> None:
    """Every weight matrix from N(0, weight_std); norms at weight 1 / bias 0; all other biases 0."""
    import torch
    from torch import nn

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            is_norm = (
                isinstance(module, nn.LayerNorm | nn.GroupNorm) or "norm" in type(module).__name__.lower()
            )
            for name, param in module.named_parameters(recurse=False):
                if param.ndim >= 2:
                    param.normal_(0.0, weight_std, generator=generator)
                elif param.ndim == 1 and is_norm and name == "weight":
                    param.fill_(1.0)
                elif param.ndim == 1 and name == "bias":
                    param.zero_()
            if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                module.weight[module.padding_idx].zero_()


# Texts and labels the output scale is calibrated on (see _calibrate_logits); unrelated to any test data.
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
    if architecture == "uni-encoder":
        prompt = "".join(LABEL_MARK + label for label in labels) + SEP_MARK
        sequences = [prompt + text if prompt_first else text + prompt for text in texts]
        inputs = dict(tokenizer(sequences, padding="longest", return_tensors="pt"))
        inputs["max_num_classes"] = len(labels)
    else:
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


def _calibrate_logits(model: Any, tokenizer: Any, *, architecture: str, prompt_first: bool) -> None:
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
            multiplier = head.logit_scale.item() if architecture == "bi-encoder" else 1.0
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


def make_tiny_checkpoint(
    path: str | os.PathLike[str],
    *,
    backbone: str = "bert",
    prompt_first: bool = True,
    pooling: str = "first",
    scorer: str = "simple",
    architecture: str = "uni-encoder",
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    max_length: int = 512,
    seed: int = 0,
    weight_std: float = 0.25,
    corpus: Iterable[str] | None = None,
) -> pathlib.Path:
    """Build a tiny random GLiClass model and its tokenizer, and save both into ``path``.

    Args:
        path: directory to write (created if missing); it then loads with
            ``GLiClassModel.from_pretrained(path)`` and ``AutoTokenizer.from_pretrained(path)``.
        backbone: ``"bert"``, ``"deberta-v2"`` (shaped like DeBERTa-v3) or ``"modernbert"``.
        prompt_first: whether the uni-encoder puts the label prompt before the text.
        pooling: GLiClass text pooling (``"first"``, ``"avg"``, ``"max"``, ``"last"``, ...).
        scorer: GLiClass scorer (``"simple"``, ``"weighted-dot"``, ``"mlp"``, ...).
        architecture: ``"uni-encoder"`` or ``"bi-encoder"``. A bi-encoder's label encoder uses the same
            backbone type, and its ``label_model_name`` is the absolute path of this checkpoint, so the
            reference bi-encoder pipeline finds the label tokenizer offline (moving the directory breaks
            that lookup; rebuild instead).
        hidden_size, num_layers, num_heads: backbone size; the feed-forward width is ``2 * hidden_size``.
        max_length: the tokenizer's ``model_max_length`` and the backbone's ``max_position_embeddings``.
        seed: weights are a pure function of the arguments; the caller's global torch RNG is untouched.
        weight_std: standard deviation of every re-drawn weight matrix (embeddings included); the
            default suits the default sizes. Afterwards the scorer's last layer (for ``"simple"``: the
            projectors' last layers) is shifted and rescaled so that logits on a fixed probe batch have
            mean ~0 and standard deviation ~1.5.
        corpus: strings to train the WordPiece vocabulary on; a built-in English corpus by default.

    Returns:
        The absolute path of the checkpoint directory.
    """
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; choose one of {', '.join(ARCHITECTURES)}")
    if hidden_size % num_heads:
        raise ValueError(f"hidden_size ({hidden_size}) must be a multiple of num_heads ({num_heads})")

    import torch
    from gliclass import GLiClassModel, GLiClassModelConfig

    out = pathlib.Path(path).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)

    tokenizer = _build_tokenizer(_CORPUS if corpus is None else list(corpus), max_length, backbone)
    marker_ids = tokenizer.convert_tokens_to_ids(list(MARKERS))
    sizes = {"hidden_size": hidden_size, "num_layers": num_layers, "num_heads": num_heads}
    encoder_config = _backbone_config(backbone, tokenizer, max_length=max_length, **sizes)
    bi_encoder = architecture == "bi-encoder"
    config = GLiClassModelConfig(
        encoder_config=encoder_config,
        # The uni-encoder opens Path(encoder_model_name) / "adapter_config.json", so a name is required;
        # the checkpoint itself is one that resolves offline.
        encoder_model=str(out),
        label_model_config=(
            _backbone_config(backbone, tokenizer, max_length=max_length, **sizes) if bi_encoder else None
        ),
        label_model_name=str(out) if bi_encoder else None,
        architecture_type=architecture,
        prompt_first=prompt_first,
        pooling_strategy=pooling,
        scorer_type=scorer,
        scorer_num_heads=num_heads,
        scorer_mlp_hidden_size=_SCORER_MLP_HIDDEN_SIZE,
        class_token_index=marker_ids[0],
        text_token_index=marker_ids[1],
        example_token_index=marker_ids[2],
        vocab_size=len(tokenizer),
        max_num_classes=25,
        problem_type="multi_label_classification",
    )

    # Building the model draws its default init from the global RNG: seed it, so that any parameter the
    # re-draw below leaves alone is reproducible too, and restore the caller's RNG state afterwards.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GLiClassModel(config)
    model.eval()
    _redraw_weights(model, seed=seed, weight_std=weight_std)
    _calibrate_logits(model, tokenizer, architecture=architecture, prompt_first=prompt_first)

    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
