"""Damaged and hostile checkpoints that used to load and score wrongly, or grow without bound, and
long texts under long_text="chunk".

Each test copies a working tiny checkpoint, damages one part (tests/checkpoint_attacks.py) and loads it
through the real loading code. The memory-heavy attacks run in a subprocess under an address-space limit
(RLIMIT_AS) a little above what the loaded process already holds, so a regression fails with a
MemoryError (or dies) instead of taking the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import checkpoint_attacks as attacks
import pytest
from reliability_support import ATTACKS, INPUTS, case

from gliclass_pipelines import Classifier, ModelLoadError
from gliclass_pipelines.model.registry import REGISTRY

pytest_plugins = ["reliability_support"]

resource = pytest.importorskip("resource", reason="RLIMIT_AS needs the POSIX resource module")

TEXTS = ["a library for parsing xml files", "a small arcade game with space ships"]
LABELS = ["libraries", "games", "science"]

# Runs `sys.argv[1]` (a statement) after loading the model in sys.argv[2], under an address space of
# what the process holds then plus sys.argv[3] MiB; prints one JSON line of what happened.
UNDER_LIMIT = """
import json, resource, sys, time
from gliclass_pipelines import Classifier, ModelLoadError
setup, model, extra = sys.argv[1], sys.argv[2], int(sys.argv[3])
clf = Classifier.load(sys.argv[4], device="cpu")
clf.run(["warm up the tokenizer's and torch's threads"], ["a", "b"])
scope = {"clf": clf, "Classifier": Classifier}
exec(setup, scope)
size = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmSize"))
resource.setrlimit(resource.RLIMIT_AS, (size + extra * 2**20,) * 2)
started = time.perf_counter()
try:
    exec(model, scope)
    result = {"done": scope.get("result")}
except ModelLoadError as error:
    result = {"ModelLoadError": str(error)}
except MemoryError:
    result = {"MemoryError": True}
result["seconds"] = round(time.perf_counter() - started, 3)
result["peak_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
print("@@" + json.dumps(result), flush=True)
"""


def under_limit(tiny: Path, setup: str, statement: str, extra_mib: int) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", UNDER_LIMIT, setup, statement, str(extra_mib), str(tiny)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "RUST_BACKTRACE": "0"},
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("@@")]
    assert done.returncode == 0 and lines, (done.returncode, done.stdout[-2000:], done.stderr[-3000:])
    return json.loads(lines[-1][2:])


def scores(clf: Classifier, texts: list[str] = TEXTS, **options) -> list:
    return clf.run(texts, LABELS, return_all=True, **options).results


@pytest.fixture(autouse=True)
def _fresh_registry():
    REGISTRY.clear()
    yield
    REGISTRY.clear()


# ---------------------------------------------------------------------------------------------------------
# 1. Weights that do not match the model


@case(
    ATTACKS,
    "model.safetensors holding {kind} (transformers' own warning is silenced while loading)",
    "ModelLoadError saying '{named}' and naming the first keys; nothing scores (was: exit 0, every "
    "label 0.48-0.49 instead of 0.91-1.00, for the missing ones)",
)
@pytest.mark.parametrize(
    "kind, change, named",
    [
        ("24 of its 48 tensors", attacks.keep_half_of_the_tensors, "24 missing"),
        ("its 48 tensors and one the model has no place for", attacks.add_a_tensor, "1 unexpected"),
    ],
    ids=["missing", "unexpected"],
)
def test_weights_that_do_not_match_the_model_are_refused(tiny_checkpoint, tmp_path, kind, change, named):
    path = attacks.copy_checkpoint(tiny_checkpoint, tmp_path, "damaged")
    attacks.rewrite_weights(path, change)
    with pytest.raises(ModelLoadError) as error:
        Classifier.load(str(path), device="cpu")
    message = str(error.value)
    assert named in message and "model." in message and str(path) in message, message
    if named == "24 missing":
        assert "and 19 more" in message and "random" in message


@case(
    ATTACKS,
    "weights legitimately absent or extra: a DeBERTa checkpoint carrying a position_embeddings tensor "
    "(the reference's _keys_to_ignore_on_load_unexpected), a BERT one as older transformers saved it "
    "(LayerNorm gamma / beta, the position_ids and token_type_ids buffers saved), a sharded checkpoint (an "
    "index and several shards), and a missing key whose tensor is tied to one that was loaded",
    "the first three load and score exactly like the plain checkpoint; the tied key is not reported",
)
def test_legitimately_absent_or_extra_weights_still_load(checkpoint_factory, tmp_path):
    import torch

    from gliclass_pipelines.model.checkpoint_checks import _untied

    deberta = checkpoint_factory(backbone="deberta-v2")
    extra = attacks.copy_checkpoint(deberta, tmp_path, "extra-positions")
    position = "model.encoder_model.embeddings.position_embeddings.weight"
    attacks.rewrite_weights(extra, lambda t: {**t, position: torch.zeros(512, 32)})
    want = scores(Classifier.load(str(deberta), device="cpu"))
    assert scores(Classifier.load(str(extra), device="cpu")) == want

    from gliclass import GLiClassModel

    tiny = checkpoint_factory()
    older = attacks.copy_checkpoint(tiny, tmp_path, "older-transformers")
    attacks.rewrite_weights(older, attacks.as_older_transformers_saved)
    assert scores(Classifier.load(str(older), device="cpu")) == scores(
        Classifier.load(str(tiny), device="cpu")
    )

    sharded = tmp_path / "sharded"
    model = GLiClassModel.from_pretrained(str(tiny))
    model.save_pretrained(sharded, max_shard_size="80KB")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (sharded / name).write_bytes((tiny / name).read_bytes())
    assert len(list(sharded.glob("model-*.safetensors"))) > 1
    assert scores(Classifier.load(str(sharded), device="cpu")) == scores(
        Classifier.load(str(tiny), device="cpu")
    )

    tied = torch.nn.ModuleDict({"a": torch.nn.Linear(2, 2), "b": torch.nn.Linear(2, 2)})
    tied["b"].weight = tied["a"].weight
    assert _untied(tied, {"b.weight"}) == set()
    assert _untied(tied, {"b.bias"}) == {"b.bias"}


# ---------------------------------------------------------------------------------------------------------
# 2. Special tokens that do not match the config


def _no_label_marker(path: Path) -> None:
    attacks.remove_marker(path, "<<LABEL>>")


def _no_sep_marker(path: Path) -> None:
    attacks.remove_marker(path, "<<SEP>>")


def _class_index(value: int):
    return lambda path: attacks.edit_json(path / "config.json", lambda c: c.update(class_token_index=value))


MARKER_ATTACKS = {
    "<<LABEL>> absent from the tokenizer": (_no_label_marker, "has no <<LABEL>> token"),
    "<<SEP>> absent from the tokenizer": (_no_sep_marker, "has no <<SEP>> token"),
    "class_token_index pointing at <<SEP>> (1501)": (
        _class_index(1501),
        "class_token_index is 1,501, the id of <<SEP>>, but the tokenizer's <<LABEL>> is token 1,500",
    ),
    "class_token_index 5000, past the 1,503 embedding rows": (
        _class_index(5000),
        "class_token_index is 5,000",
    ),
    "the word 'library' renumbered to id 5000 over 1,503 embedding rows": (
        lambda path: attacks.renumber_word(path, "library", 5000),
        "'library' is token 5,000",
    ),
}


@case(
    ATTACKS,
    "uni-encoder checkpoint with {attack}",
    "ModelLoadError at load naming the token and the numbers (was: exit 0 with wrong scores, or a raw "
    "ValueError / IndexError mid-job)",
)
@pytest.mark.parametrize("attack", list(MARKER_ATTACKS))
def test_special_token_mismatches_are_refused(tiny_checkpoint, tmp_path, attack):
    damage, named = MARKER_ATTACKS[attack]
    path = attacks.copy_checkpoint(tiny_checkpoint, tmp_path, "tokens")
    damage(path)
    with pytest.raises(ModelLoadError) as error:
        Classifier.load(str(path), device="cpu")
    assert named in str(error.value) and str(path) in str(error.value), str(error.value)


@case(
    ATTACKS,
    "bi-encoder checkpoint whose tokenizer has no <<LABEL>>, <<SEP>> or <<EXAMPLE>> (a bi-encoder "
    "never puts them in its input)",
    "loads and scores exactly like the checkpoint with them",
)
def test_bi_encoder_needs_no_marker_tokens(checkpoint_factory, tmp_path):
    bi = checkpoint_factory(architecture="bi-encoder")
    bare = attacks.copy_checkpoint(bi, tmp_path, "bare")
    for marker in ("<<LABEL>>", "<<SEP>>", "<<EXAMPLE>>"):
        attacks.remove_marker(bare, marker)
    want = scores(Classifier.load(str(bi), device="cpu"))
    assert scores(Classifier.load(str(bare), device="cpu")) == want


# ---------------------------------------------------------------------------------------------------------
# 10. Tokenizers that panic or crawl


@case(
    ATTACKS,
    "tokenizer whose pre-tokenizer regex (a+)+$ backtracks: the Rust tokenizer panics (PanicException, a "
    "BaseException) on a run of 'a' not at the end",
    "ModelLoadError at load: the probe texts made it panic; the process goes on",
)
def test_a_tokenizer_that_panics_on_the_probe_is_refused(tiny_checkpoint, tmp_path, reliability):
    path = attacks.copy_checkpoint(tiny_checkpoint, tmp_path, "panics")
    attacks.backtracking_pre_tokenizer(path, "(a+)+$")
    started = time.perf_counter()
    with pytest.raises(ModelLoadError, match="fails on 100 probe texts .*PanicException"):
        Classifier.load(str(path), device="cpu")
    reliability.set(seconds=round(time.perf_counter() - started, 2))


@case(
    ATTACKS,
    "tokenizer that passes the probe but panics on one row ('ab' x 300 + 'c' under the regex ((ab)+)+$), "
    "in a batch of good rows, under long_text truncate and chunk",
    "that row is a failed row (reason: the tokenizer failed, PanicException) and counted; the others "
    "score exactly as with the plain tokenizer",
)
@pytest.mark.parametrize("long_text", ["truncate", "chunk"])
def test_a_row_the_tokenizer_panics_on_is_a_failed_row(tiny_checkpoint, clf, tmp_path, long_text):
    path = attacks.copy_checkpoint(tiny_checkpoint, tmp_path, "panics-on-a-row")
    attacks.backtracking_pre_tokenizer(path, "((ab)+)+$")
    texts = [TEXTS[0], "ab" * 300 + "c", TEXTS[1]]
    out = Classifier.load(str(path), device="cpu").run(texts, LABELS, return_all=True, long_text=long_text)
    assert out.results[1] is None and out.outcomes[1].is_failed
    assert "PanicException" in out.outcomes[1].reason and out.outcomes[1].code == "tokenizer"
    assert (out.stats.failed, out.stats.reasons) == (1, {"tokenizer": 1})
    assert [out.results[0], out.results[2]] == scores(clf, long_text=long_text)


@case(
    ATTACKS,
    "tokenizer that never returns on the probe texts (blocked; the probe's limit lowered to 0.2 s)",
    "ModelLoadError 'took more than 0.2 s' once the limit passes",
)
def test_a_tokenizer_that_crawls_on_the_probe_is_refused(monkeypatch):
    from gliclass_pipelines.model import tokenizer_checks

    release = threading.Event()

    class Stuck:
        def get_vocab(self):
            return {"a": 0}

        def __len__(self):
            return 1

        def __call__(self, texts, **kwargs):
            release.wait(60)
            return {"input_ids": [[0] for _ in texts]}

    monkeypatch.setattr(tokenizer_checks, "PROBE_SECONDS", 0.2)
    try:
        with pytest.raises(ModelLoadError, match="took more than 0.2 s"):
            tokenizer_checks.check_tokenizer(Stuck(), 10, "stuck")
    finally:
        release.set()


# ---------------------------------------------------------------------------------------------------------
# 12. A config far larger than its weights


@case(
    ATTACKS,
    "config.json asking for hidden 1024 x 10,000 layers over the tiny model's 87k-value weights, loaded "
    "in a subprocess under an address space of what it holds + 256 MiB",
    "ModelLoadError comparing the parameters asked for with the values held, in well under a second, "
    "before anything is built (was: 38 s and +680 MiB, then a size-mismatch error)",
)
def test_a_config_far_larger_than_its_weights_is_refused_at_once(tiny_checkpoint, tmp_path, reliability):
    path = attacks.copy_checkpoint(tiny_checkpoint, tmp_path, "huge-config")
    attacks.huge_encoder_config(path)
    found = under_limit(tiny_checkpoint, "", f"Classifier.load({str(path)!r}, device='cpu')", 256)
    assert "125,965,490,241 parameters" in found.get("ModelLoadError", ""), found
    assert "86,977 values" in found["ModelLoadError"]
    assert found["seconds"] < 2.0, found
    reliability.set(seconds=found["seconds"], peak_mib=found["peak_mib"])


# ---------------------------------------------------------------------------------------------------------
# 14. Long texts under long_text="chunk"

LONG_SETUP = """
import numpy as np
words = "the quick brown fox jumps over the lazy dog and keeps running far away".split()
long_text = " ".join(words[i % len(words)] for i in range(8_000_000 // 5))
huge = "word " * 20_000_000
# the model's forward is replaced by zeros: what is measured is encoding, windows and batching
type(clf).forward = lambda self, batch: np.zeros((len(batch.sequences), 3), dtype=np.float32)
"""
LONG_RUN = """
out = clf.run([long_text, huge, "a short text"], ["libraries", "games", "science"], long_text="chunk")
result = [[o.kind, o.code] for o in out.outcomes] + [out.stats.sequences, out.truncated]
"""


@case(
    ATTACKS,
    "long_text='chunk' on an 8,000,000-character text and a 100,000,000-character one, beside a short "
    "text, in a subprocess under an address space of what it holds + 200 MiB (the model's forward "
    "replaced by zeros)",
    "the 8M text streams (thousands of windows) within the limit (was: +1.4 GiB for 9M characters); "
    "the 100M one is a failed row 'text_too_long' naming the limit; the short one is ok",
)
def test_chunked_long_texts_stream_in_bounded_memory(tiny_checkpoint, reliability):
    found = under_limit(tiny_checkpoint, LONG_SETUP, LONG_RUN, 200)
    outcomes, sequences, truncated = found["done"][:3], found["done"][3], found["done"][4]
    assert outcomes == [["ok", None], ["failed", "text_too_long"], ["ok", None]], found
    assert sequences > 3000 and truncated == [True, False, False]
    reliability.set(windows=sequences, seconds=found["seconds"], peak_mib=found["peak_mib"])


@case(
    INPUTS,
    "long_text='chunk' on texts past the streaming length (lowered to 10,000 characters, 4,096-character "
    "pieces): uni-encoder prompt first and text first, a bi-encoder, and 40 labels in several label groups "
    "at max_length 128; a text of 12,000 characters that is mostly spaces",
    "the same windows, the same truncated flags (the mostly blank text is not cut), and scores within "
    "1e-6 of tokenizing each text whole (only the batches differ); a text over "
    "GLICLASS_PIPELINES_MAX_CHUNK_CHARS is a failed row naming the variable",
)
@pytest.mark.parametrize(
    "variant, max_length, n_labels",
    [
        ({}, None, 0),
        ({"prompt_first": False}, None, 0),
        ({"architecture": "bi-encoder"}, None, 0),
        ({}, 128, 40),
    ],
    ids=["uni-pf", "uni-tf", "bi", "groups"],
)
def test_streamed_windows_score_like_whole_texts(
    checkpoint_factory, monkeypatch, variant, max_length, n_labels
):
    import gliclass_pipelines.core.encoding as encoding
    import gliclass_pipelines.core.long_text as long_text
    from gliclass_pipelines.testing.tokenizer import CORPUS

    text = "  ".join(CORPUS) * 3
    clf = Classifier.load(str(checkpoint_factory(**variant)), device="cpu", max_length=max_length)
    labels = [f"topic {i}" for i in range(n_labels)] or LABELS
    assert (len(clf.prepare(labels).groups) > 1) == bool(n_labels)
    texts = [text, "a short text", "few words" + " " * 12_000 + "in a long text"]
    whole = clf.run(texts, labels, long_text="chunk", return_all=True)
    monkeypatch.setattr(encoding, "STREAM_CHARS", 10_000)
    monkeypatch.setattr(long_text, "PIECE_CHARS", 4096)
    assert len(list(long_text.text_pieces(text))) > 3
    streamed = clf.run(texts, labels, long_text="chunk", return_all=True)
    assert streamed.stats.sequences == whole.stats.sequences
    assert streamed.truncated == whole.truncated == [True, False, False]
    for got, want in zip(streamed.results, whole.results):
        got, want = ({d["label"]: d["score"] for d in row} for row in (got, want))
        assert got.keys() == want.keys() and max(abs(got[k] - want[k]) for k in got) < 1e-6

    monkeypatch.setenv(long_text.MAX_CHUNK_CHARS_ENV, str(len(text) - 1))
    out = clf.run(texts, labels, long_text="chunk")
    assert out.outcomes[0].code == "text_too_long" and long_text.MAX_CHUNK_CHARS_ENV in out.outcomes[0].reason
    assert out.outcomes[1].is_ok and out.outcomes[2].is_ok and out.stats.failed == 1


def test_text_pieces_join_into_the_whole_texts_tokens():
    """Cut before a space, the pieces' ids join into the whole text's for byte-level BPE (with and without
    a prefix space) and metaspace Unigram tokenizers, also where lines end in newlines (a cut before the
    newline would give the last two an extra token); the tiny checkpoints' WordPiece is covered by the
    scores test above."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    from gliclass_pipelines.core.long_text import text_pieces
    from gliclass_pipelines.testing.tokenizer import CORPUS

    tokenizers = []
    for prefix_space in (False, True):
        byte_level = Tokenizer(models.BPE())
        byte_level.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=prefix_space)
        alphabet = pre_tokenizers.ByteLevel.alphabet()
        byte_level.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=800, initial_alphabet=alphabet))
        tokenizers.append(byte_level)
    unigram = Tokenizer(models.Unigram())
    unigram.normalizer = normalizers.NFKC()
    unigram.pre_tokenizer = pre_tokenizers.Metaspace()
    unigram.train_from_iterator(
        CORPUS, trainers.UnigramTrainer(vocab_size=600, unk_token="<unk>", special_tokens=["<unk>"])
    )
    tokenizers.append(unigram)
    lines = ("a line of words\n" * 20 + "word " + "line\n" * 50) * 20  # more newlines than spaces
    text = "  ".join(CORPUS) * 5 + "\n\n  tabs\tand   spaces " * 50 + lines
    unbroken = list(text_pieces("x" * 2500, 1000))  # no whitespace: cut at the size
    assert [len(p) for p in unbroken] == [1000, 1000, 500]
    assert {p[0] for p in list(text_pieces("cell\t" * 500, 1000))[1:]} == {"\t"}  # no space: other whitespace
    pieces = list(text_pieces(text, 1000))
    assert "".join(pieces) == text and max(map(len, pieces)) <= 1000
    assert {p[0] for p in pieces[1:]} == {" "}
    for tokenizer in tokenizers:
        whole = tokenizer.encode(text, add_special_tokens=False).ids
        assert [i for p in pieces for i in tokenizer.encode(p, add_special_tokens=False).ids] == whole


# ---------------------------------------------------------------------------------------------------------
# 15. Tokenizer files far larger than the model's vocabulary


@case(
    ATTACKS,
    "tokenizer.json with 200,000 extra vocabulary entries ({mib} MiB) over a 1,503-row embedding matrix, "
    "loaded in a subprocess under an address space of what it holds + 256 MiB",
    "ModelLoadError naming the bytes, the limit and the embedding rows before the tokenizer is parsed, "
    "in well under a second (was: 2M entries, 38 MiB, took 4.5 s and +410 MiB, then an IndexError mid-job)",
)
@pytest.mark.parametrize("mib", ["3.4"])
def test_tokenizer_files_larger_than_the_vocabulary_are_refused(tiny_checkpoint, tmp_path, reliability, mib):
    path = attacks.copy_checkpoint(tiny_checkpoint, tmp_path, "huge-vocab")
    attacks.huge_vocabulary(path, 200_000)
    assert f"{(path / 'tokenizer.json').stat().st_size / 2**20:.1f}" == mib
    found = under_limit(tiny_checkpoint, "", f"Classifier.load({str(path)!r}, device='cpu')", 256)
    message = found.get("ModelLoadError", "")
    assert "more than the 1,818,112 a vocabulary for the model's 1,503 embedding rows" in message, found
    assert found["seconds"] < 2.0, found
    reliability.set(seconds=found["seconds"], peak_mib=found["peak_mib"])


@case(
    ATTACKS,
    "tokenizer.json with 2,000 extra entries (small enough to pass the size cap) that renumber "
    "<<LABEL>> to 3,500, past the 1,503 embedding rows",
    "ModelLoadError before the tokenizer is built (tokenizer.json read as JSON): token ids up to 3,502 "
    "past the 1,503 rows of the embedding matrix; the loaded tokenizer's own check says the same",
)
def test_a_vocabulary_past_the_embedding_matrix_is_refused(tiny_checkpoint, tmp_path, monkeypatch):
    import transformers
    from transformers import AutoTokenizer

    from gliclass_pipelines.model.tokenizer_checks import check_tokenizer

    path = attacks.copy_checkpoint(tiny_checkpoint, tmp_path, "renumbered")
    attacks.huge_vocabulary(path, 2000)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    with pytest.raises(
        ModelLoadError, match="its tokenizer gives token ids up to 3,502 .* past the 1,503 rows"
    ):
        check_tokenizer(tokenizer, 1503, "renumbered")

    def never(*args, **kwargs):
        raise AssertionError("the tokenizer was built")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", never)
    with pytest.raises(
        ModelLoadError, match="tokenizer.json gives token ids up to 3,502 .* past the 1,503 rows"
    ):
        Classifier.load(str(path), device="cpu")
