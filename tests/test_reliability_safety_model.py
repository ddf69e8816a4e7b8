"""Hostile checkpoints and model sources: code in a checkpoint, pickle weights, secrets in URIs, a
replaced remote model, an unusable cache folder, an absurdly long model string.

The code-execution attacks run the real loader in a subprocess whose stdin answers "y" to any prompt;
the checkpoint's .py file writes a marker file when imported, and the marker must never appear.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from memory_fs import put_in_memory_fs
from reliability_support import ATTACKS, case

from gliclass_pipelines import Classifier, ConfigError, ModelLoadError, UnsupportedModelError
from gliclass_pipelines._common.redaction import redact
from gliclass_pipelines.model.sources import CACHE_ENV, ModelSource, copy_remote

pytest_plugins = ["reliability_support"]

EVIL_CODE = """
from pathlib import Path
Path({marker!r}).write_text("the checkpoint's code ran")
from transformers import PretrainedConfig, PreTrainedTokenizerFast

class EvilConfig(PretrainedConfig):
    model_type = "evil"

class EvilTokenizer(PreTrainedTokenizerFast):
    pass

class EvilModel:
    pass
"""

LOAD_IN_CHILD = """
import sys
from gliclass_pipelines import Classifier
from gliclass_pipelines.model import checkpoint
checked = checkpoint._refuse_custom_code
for path, mode in zip(sys.argv[1::2], sys.argv[2::2]):
    # bypass-checks: prove that trust_remote_code=False holds on its own
    checkpoint._refuse_custom_code = (lambda *args: None) if mode == "bypass-checks" else checked
    try:
        Classifier.load(path, device="cpu")
    except Exception as error:
        print("@@", path, "RAISED", type(error).__name__, error, flush=True)
    else:
        print("@@", path, "LOADED", flush=True)
"""


def hostile_checkpoint(tiny: Path, where: Path, variant: str) -> tuple[Path, Path]:
    """A copy of a working checkpoint that asks transformers to import evil.py (writes ``marker``)."""
    path = Path(shutil.copytree(tiny, where / f"evil-{variant}"))
    marker = where / f"MARKER-{variant}"
    (path / "evil.py").write_text(EVIL_CODE.format(marker=str(marker)), encoding="utf-8")
    config = json.loads((path / "config.json").read_text())
    tokenizer = json.loads((path / "tokenizer_config.json").read_text())
    if variant == "tokenizer auto_map":
        tokenizer["auto_map"] = {"AutoTokenizer": ["evil.EvilTokenizer", "evil.EvilTokenizer"]}
        tokenizer["tokenizer_class"] = "EvilTokenizer"
    elif variant == "config auto_map":
        config["auto_map"] = {"AutoConfig": "evil.EvilConfig"}
        config["encoder_config"]["model_type"] = "evil"
        config["encoder_model_name"] = str(path)
    elif variant == "encoder auto_map":
        config["encoder_config"]["auto_map"] = {
            "AutoModel": "evil.EvilModel",
            "AutoConfig": "evil.EvilConfig",
        }
    elif variant == "unknown encoder type":  # the reference then trusts the encoder folder's code
        encoder = path / "encoder"
        encoder.mkdir()
        shutil.copy(path / "evil.py", encoder / "evil.py")
        (encoder / "config.json").write_text(
            json.dumps({"model_type": "evil", "auto_map": {"AutoConfig": "evil.EvilConfig"}})
        )
        config["encoder_config"]["model_type"] = "evil"
        config["encoder_model_name"] = str(encoder)
    (path / "config.json").write_text(json.dumps(config))
    (path / "tokenizer_config.json").write_text(json.dumps(tokenizer))
    return path, marker


VARIANTS = ["tokenizer auto_map", "config auto_map", "encoder auto_map", "unknown encoder type"]
BYPASS = "tokenizer auto_map, up-front check off"


@pytest.fixture(scope="module")
def hostile_loads(tiny_checkpoint, tmp_path_factory) -> dict[str, tuple[str, Path]]:
    """Each hostile checkpoint loaded in one subprocess fed 'y' answers: variant -> (its output, marker)."""
    where = tmp_path_factory.mktemp("hostile")
    built = {variant: hostile_checkpoint(tiny_checkpoint, where, variant) for variant in VARIANTS}
    bypass_where = tmp_path_factory.mktemp("hostile-bypass")
    built[BYPASS] = hostile_checkpoint(tiny_checkpoint, bypass_where, "tokenizer auto_map")
    args = [
        a
        for v, (path, _) in built.items()
        for a in (str(path), "bypass-checks" if v == BYPASS else "checked")
    ]
    result = subprocess.run(
        [sys.executable, "-c", LOAD_IN_CHILD, *args],
        input="y\n" * 20,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    chunks = {c.split(" ", 1)[0]: c for c in result.stdout.split("@@ ")[1:]}
    return {v: (chunks.get(str(path), result.stdout), marker) for v, (path, marker) in built.items()}


@case(
    ATTACKS,
    "checkpoint with custom code ({variant}) whose evil.py writes a marker when imported; "
    "loaded in a subprocess whose stdin answers 'y' to any prompt",
    "UnsupportedModelError before loading, no prompt, the marker never written",
)
@pytest.mark.parametrize("variant", VARIANTS)
def test_checkpoint_code_never_runs(hostile_loads, variant):
    output, marker = hostile_loads[variant]
    assert not marker.exists(), output
    assert "RAISED UnsupportedModelError" in output, output
    assert "Do you wish to run the custom code" not in output
    assert "never runs" in output


@case(
    ATTACKS,
    "the tokenizer auto_map checkpoint with the up-front check switched off (stdin answers 'y')",
    "trust_remote_code=False alone holds: a ModelLoadError, no prompt, no marker",
)
def test_trust_remote_code_false_holds_without_the_check(hostile_loads):
    output, marker = hostile_loads[BYPASS]
    assert not marker.exists(), output
    assert "RAISED ModelLoadError" in output and "tokenizer" in output, output
    assert "Do you wish to run the custom code" not in output


@case(
    ATTACKS,
    "a remote (fsspec) checkpoint that declares auto_map",
    "UnsupportedModelError; nothing of it is left in the model cache",
)
def test_remote_checkpoint_with_code_is_refused_before_caching(tiny_checkpoint, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(cache))
    path, marker = hostile_checkpoint(tiny_checkpoint, tmp_path, "config auto_map")
    uri = "memory://models/evil-remote"
    put_in_memory_fs(path, uri)
    with pytest.raises(UnsupportedModelError, match="auto_map"):
        Classifier.load(uri, device="cpu")
    assert not marker.exists()
    assert [p for p in cache.iterdir() if p.is_dir()] == []


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pickle ran')",))


@case(
    ATTACKS,
    "checkpoint whose only weights are a pytorch_model.bin pickle that runs code when unpickled",
    "UnsupportedModelError: refused because pickle weights can run code, safetensors needed; "
    "the pickle never unpickled",
)
def test_pickle_weights_are_refused_and_said_why(tiny_checkpoint, tmp_path):
    path = Path(shutil.copytree(tiny_checkpoint, tmp_path / "pickled"))
    for weights in path.glob("*.safetensors"):
        weights.unlink()
    marker = tmp_path / "MARKER-pickle"
    with open(path / "pytorch_model.bin", "wb") as handle:
        pickle.dump({"state": _RunsCode(marker)}, handle)
    with pytest.raises(UnsupportedModelError) as error:
        Classifier.load(str(path), device="cpu")
    message = str(error.value)
    assert "pytorch_model.bin" in message and "pickle" in message and "can run code" in message
    assert "safetensors" in message and "corrupt" not in message
    assert not marker.exists()

    from gliclass_pipelines.model.checkpoint import _weights_message

    refused = _weights_message(path, "m", pickle.UnpicklingError("Weights only load failed"))
    assert "can run code" in refused and "corrupt" not in refused


SECRET_SOURCES = [
    "https://alice:hunter2-secret@models.example.com/gliclass/edge?sig=SIGSECRET",
    "memory://bob:tok-secret@host/models/missing?sig=SIGSECRET&X-Amz-Signature=SIGSECRET",
    "s3://carol:p@ss-secret@bucket/model#SIGSECRET",
]


@case(
    ATTACKS,
    "model URIs with secrets in userinfo, query and fragment (https, memory, s3; a password with '@'): "
    "unreachable ones, and a reachable memory:// one loaded for real",
    "no secret in any error, str/repr of the source, Classifier.source, log line or cache folder name",
)
def test_secrets_in_model_uris_never_appear(tiny_checkpoint, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    caplog.set_level(logging.DEBUG, logger="gliclass_pipelines")
    shown = []
    for uri in SECRET_SOURCES:
        with pytest.raises(ModelLoadError) as error:
            Classifier.load(uri, device="cpu")
        source = ModelSource.parse(uri)
        shown += [str(error.value), str(source), repr(source)]
    uri = "memory://dave:tok-secret@host/models/tiny?sig=SIGSECRET"
    put_in_memory_fs(tiny_checkpoint, uri)
    clf = Classifier.load(uri, device="cpu")
    shown += [clf.source, repr(clf), *caplog.messages, *(p.name for p in (tmp_path / "cache").iterdir())]
    for text in shown:
        for secret in ("hunter2", "tok-secret", "ss-secret", "SIGSECRET", "alice", "carol"):
            assert secret not in text, text
    assert "***@models.example.com/gliclass/edge?***" in " ".join(shown)


def test_redact_keeps_what_is_not_a_secret():
    assert redact("knowledgator/gliclass-edge-v3.0@a1b2c3") == "knowledgator/gliclass-edge-v3.0@a1b2c3"
    assert redact("/opt/models/edge") == "/opt/models/edge"
    assert redact("gs://bucket/models/edge") == "gs://bucket/models/edge"
    assert redact("s3://u:p@ss@b/m") == "s3://***@b/m"
    assert redact("failed for 'https://u:pw@h/x?t=1' and https://h/y#frag") == (
        "failed for 'https://***@h/x?***' and https://h/y?***"
    )


@case(
    ATTACKS,
    "a remote (memory://) checkpoint replaced in place by another model after it was cached",
    "the next load lists the source's version, copies the new model and scores with it; "
    "an unchanged source is not copied again; the older copy is removed",
)
def test_replaced_remote_checkpoint_is_copied_again(checkpoint_factory, tmp_path, monkeypatch, reliability):
    cache = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(cache))
    uri = "memory://models/replaced-in-place"
    first, second = checkpoint_factory(seed=21), checkpoint_factory(seed=22)
    put_in_memory_fs(first, uri)
    copy = copy_remote(uri)
    assert copy_remote(uri) == copy  # unchanged: the same copy, no second download
    texts, labels = ["a library for parsing xml", "a small arcade game"], ["libs", "games"]
    before = Classifier.load(uri, device="cpu").classify(texts, labels, return_all=True)

    put_in_memory_fs(second, uri)
    new_copy = copy_remote(uri)
    assert new_copy != copy and not copy.exists()
    assert (new_copy / "model.safetensors").read_bytes() == (second / "model.safetensors").read_bytes()
    after = Classifier.load(uri, device="cpu", max_length=256).classify(texts, labels, return_all=True)
    want = Classifier.load(str(second), device="cpu", max_length=256).classify(texts, labels, return_all=True)
    assert after == want and after != before
    reliability.set(copies_left=len([p for p in cache.iterdir() if p.is_dir()]))


def _read_only_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


CACHES = {
    "a file in the way": lambda tmp: (tmp / "file").write_text("x") and tmp / "file" / "cache",
    "inside /proc": lambda tmp: Path("/proc/self/gliclass-cache"),
    "a read-only folder": _read_only_dir,
}


@case(
    ATTACKS,
    "GLICLASS_PIPELINES_CACHE unusable ({kind}) while loading a remote model",
    "ModelLoadError (CLI exit 3) naming GLICLASS_PIPELINES_CACHE; no raw OSError",
)
@pytest.mark.parametrize("kind", list(CACHES))
def test_unusable_cache_names_the_variable(tiny_checkpoint, tmp_path, monkeypatch, kind):
    if kind == "a read-only folder" and os.geteuid() == 0:
        pytest.skip("root writes into read-only folders; the other two kinds cover root")
    if kind == "inside /proc" and not os.path.isdir("/proc/self"):
        pytest.skip("no /proc on this system")
    monkeypatch.setenv(CACHE_ENV, str(CACHES[kind](tmp_path)))
    uri = f"memory://models/cache-{kind.replace(' ', '-')}"
    put_in_memory_fs(tiny_checkpoint, uri)
    with pytest.raises(ModelLoadError, match=f"{CACHE_ENV}=.* is not a writable directory"):
        Classifier.load(uri, device="cpu")


@case(
    ATTACKS,
    "a 100,000-character model string ({kind})",
    "a ConfigError or ModelLoadError under 1,000 characters that says how much was cut",
)
@pytest.mark.parametrize(
    "kind, spec",
    [
        ("not a model id", "x y" * 33_334),
        ("Hub-id-like word", "x" * 100_000),
        ("local path", "/" + "a" * 100_000),
        ("remote URI", "memory://" + "a" * 100_000),
        ("URI with a secret", "https://user:secret@host/" + "a" * 100_000),
    ],
    ids=["id", "hub-like", "path", "uri", "secret-uri"],
)
def test_huge_model_string_gives_a_short_error(kind, spec, tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    with pytest.raises((ConfigError, ModelLoadError)) as error:
        Classifier.load(spec, device="cpu")
    message = str(error.value)
    assert len(message) < 1000, len(message)
    assert "more characters" in message and "user:secret" not in message


@case(
    ATTACKS,
    "checkpoint files that never end or never stop: tokenizer.json a link to /dev/zero, config.json a "
    "FIFO, a local folder and a remote one with 1,001 files",
    "ModelLoadError naming the file or the count, at once (nothing read without bound)",
)
def test_special_and_endless_checkpoint_files_are_refused(tiny_checkpoint, tmp_path, monkeypatch):
    if not os.path.exists("/dev/zero") or not hasattr(os, "mkfifo"):
        pytest.skip("needs /dev/zero and FIFOs (POSIX)")
    endless = Path(shutil.copytree(tiny_checkpoint, tmp_path / "endless"))
    (endless / "tokenizer.json").unlink()
    (endless / "tokenizer.json").symlink_to("/dev/zero")
    with pytest.raises(ModelLoadError, match="tokenizer.json is not a regular file"):
        Classifier.load(str(endless), device="cpu")
    fifo = Path(shutil.copytree(tiny_checkpoint, tmp_path / "fifo"))
    (fifo / "config.json").unlink()
    os.mkfifo(fifo / "config.json")
    with pytest.raises(ModelLoadError, match="config.json is not a regular file"):
        Classifier.load(str(fifo), device="cpu")
    crowded = Path(shutil.copytree(tiny_checkpoint, tmp_path / "crowded"))
    for i in range(1001):
        (crowded / f"extra-{i}.txt").write_text("x")
    with pytest.raises(ModelLoadError, match="more than 1,000 entries"):
        Classifier.load(str(crowded), device="cpu")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    uri = "memory://models/crowded"
    put_in_memory_fs(crowded, uri)
    with pytest.raises(ModelLoadError, match="more than 1,000 files"):
        Classifier.load(uri, device="cpu")
