"""Model sources, the per-process model registry, and device and dtype resolution.

A model source is a Hub id with an optional revision (``org/name@rev``), a local directory, or a
remote URI of any fsspec protocol (``gs://``, ``s3://``, ``hdfs://``, ``memory://`` ...). Remote
checkpoints are copied into a local cache, under a file lock and with an atomic rename, so an
interrupted copy never leaves a half-written model that looks usable; the copy is keyed on the
source's version, so a replaced source is copied again (see :func:`copy_remote`).

A checkpoint never runs its own code: every ``from_pretrained`` gets ``trust_remote_code=False``, and a
checkpoint that declares ``auto_map``, an encoder type transformers does not know, or only pickle
weights is refused before anything is loaded (:func:`check_checkpoint_dir`).

Every message that names a source passes it through :func:`gliclass_pipelines.redaction.redact`.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from gliclass_pipelines.errors import ConfigError, ModelLoadError, UnsupportedModelError
from gliclass_pipelines.redaction import redact, shorten

logger = logging.getLogger(__name__)

CACHE_ENV = "GLICLASS_PIPELINES_CACHE"
MAX_MODELS_ENV = "GLICLASS_PIPELINES_MAX_MODELS"
DEFAULT_MAX_MODELS = 2
MAX_JSON_BYTES = 64 * 1024 * 1024  # a config or tokenizer config is kilobytes
MAX_CHECKPOINT_FILES = 1_000  # a checkpoint folder holds a handful of files
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
# Where fsspec file systems report a file's version, most specific first.
_VERSION_FIELDS = (
    "ETag", "etag", "md5Hash", "md5", "crc32c", "generation", "VersionId", "version_id",
    "mtime", "LastModified", "last_modified", "updated", "modified", "created",
)  # fmt: skip

SUPPORTED_ARCHITECTURES = ("uni-encoder", "bi-encoder")
SUPPORTED_POOLINGS = ("first", "last", "avg", "max", "sum", "rms", "abs_max", "abs_avg")
SUPPORTED_SCORERS = ("simple", "weighted-dot", "mlp", "hopfield")
DTYPES = ("auto", "float32", "float16", "bfloat16")

_HUB_ID_MAX = 200  # the Hub allows 96 characters per name part
_HUB_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*$")
_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


@dataclass(frozen=True)
class ModelSource:
    """Where a checkpoint comes from. Build it with :meth:`parse`."""

    kind: str  # "hub", "local" or "remote"
    location: str  # a Hub repo id, an absolute local path, or a URI
    revision: str | None = None

    @classmethod
    def parse(cls, spec: str | os.PathLike[str] | ModelSource) -> ModelSource:
        """Check a model string's format without touching the network or the disk's contents."""
        if isinstance(spec, ModelSource):
            return spec
        if isinstance(spec, os.PathLike):
            spec = os.fspath(spec)
        if not isinstance(spec, str) or not spec.strip():
            raise ConfigError(
                f"model must be a Hub id, a local directory or a URI, got {shorten(repr(spec))}"
            )
        spec = spec.strip()
        match = _URI.match(spec)
        if match:
            if match.group(1) == "file":
                return cls("local", os.path.abspath(spec[len("file://") :]))
            return cls("remote", spec)
        if spec.startswith(("/", ".", "~")) or os.path.isdir(spec):
            return cls("local", os.path.abspath(os.path.expanduser(spec)))
        repo_id, _, revision = spec.partition("@")
        if len(repo_id) > _HUB_ID_MAX or not _HUB_ID.match(repo_id) or (_ and not revision):
            raise ConfigError(
                f"model {shorten(repr(spec))} is neither an existing directory, a URI (gs://, s3://, "
                "file://...), nor a Hub id like 'knowledgator/gliclass-edge-v3.0' (optionally with "
                "'@<revision>')"
            )
        return cls("hub", repo_id, revision or None)

    def __str__(self) -> str:
        """The source as users wrote it, with URI secrets (userinfo, query) redacted: safe to print."""
        return redact(f"{self.location}@{self.revision}" if self.revision else self.location)

    def __repr__(self) -> str:
        return f"ModelSource({self.kind!r}, {redact(self.location)!r}, {self.revision!r})"

    def fetch(self) -> Path:
        """Return a local directory holding the checkpoint, downloading or copying it when needed."""
        if self.kind == "local":
            directory = Path(self.location)
        elif self.kind == "remote":
            directory = copy_remote(self.location)
        else:
            directory = _download_from_hub(self.location, self.revision)
        check_checkpoint_dir(directory, str(self))
        return directory


def _download_from_hub(repo_id: str, revision: str | None) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, revision=revision))
    except Exception as exc:  # the Hub client raises many types for "not reachable / not cached"
        spec = f"{repo_id}@{revision}" if revision else repo_id
        raise ModelLoadError(hub_unavailable_message(spec, exc)) from exc


def hub_unavailable_message(spec: str, exc: BaseException | None = None) -> str:
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")
    reason = (
        "HF_HUB_OFFLINE is set and the model is not in the local cache"
        if offline
        else ("the Hugging Face Hub could not be reached and the model is not in the local cache")
    )
    detail = f" ({type(exc).__name__}: {shorten(exc, 400)})" if exc is not None else ""
    reach = (
        "set HF_HUB_OFFLINE=0 on a machine that can reach the Hub"
        if offline
        else "check this machine's network or proxy (HF_ENDPOINT) so that it can reach the Hub"
    )
    spec = shorten(spec)
    return (
        f"Could not load model '{spec}': {reason}{detail}.\n"
        "To fix it, do one of:\n"
        f"  - {reach};\n"
        f"  - pre-download it where the Hub is reachable: `hf download {spec.split('@')[0]}` "
        "(or huggingface_hub.snapshot_download), then copy the HF_HOME cache here;\n"
        "  - pass a local checkpoint directory or a remote URI (gs://, s3://, hdfs://...) as the model;\n"
        "  - for a quick offline try: `gliclass-pipelines make-test-model DIR` and pass DIR."
    )


def check_checkpoint_dir(directory: Path, spec: str) -> dict[str, Any]:
    """Read and check a checkpoint's files before anything is loaded. Refuse what this library does not run.

    Refused with UnsupportedModelError: a config that is not GLiClass or uses an unsupported architecture;
    custom code (``auto_map`` in config.json, its encoder/label configs or a tokenizer_config.json, or an
    encoder ``model_type`` transformers does not know, for which the reference would call
    ``AutoConfig.from_pretrained(..., trust_remote_code=True)``); pickle weights without safetensors.
    """
    name = shorten(spec)
    config_file = directory / "config.json"
    try:
        is_dir, has_config = directory.is_dir(), config_file.is_file()
    except OSError as exc:  # a name too long, a loop of links...
        raise ModelLoadError(f"model '{name}': cannot read {shorten(directory)} ({exc.strerror})") from exc
    if not is_dir:
        raise ModelLoadError(f"model '{name}': directory {shorten(directory)} does not exist")
    _refuse_special_files(directory, name)
    if not has_config:
        raise ModelLoadError(
            f"model '{name}': {shorten(config_file)} is missing. A GLiClass checkpoint directory holds "
            "config.json, the weights (model.safetensors) and the tokenizer files, as written by "
            "save_pretrained."
        )
    config = _read_json(config_file, name)
    if not isinstance(config, dict) or config.get("model_type") != "GLiClass":
        raise UnsupportedModelError(
            f"model '{name}': {config_file} does not describe a GLiClass model "
            f"(model_type={shorten(repr(config.get('model_type') if isinstance(config, dict) else None))})"
        )
    _require(
        name, "architecture_type", config.get("architecture_type", "uni-encoder"), SUPPORTED_ARCHITECTURES
    )
    _require(name, "pooling_strategy", config.get("pooling_strategy", "first"), SUPPORTED_POOLINGS)
    _require(name, "scorer_type", config.get("scorer_type", "simple"), SUPPORTED_SCORERS)
    for flag in ("use_lstm", "layer_wise", "extract_text_features", "multimodal"):
        if config.get(flag):
            raise UnsupportedModelError(f"model '{name}': {flag}=true is not supported by gliclass-pipelines")
    _refuse_custom_code(directory, config, name)
    _refuse_pickle_weights(directory, name)
    return config


def _read_json(path: Path, name: str) -> Any:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_JSON_BYTES + 1)
        if len(data) > MAX_JSON_BYTES:
            raise ModelLoadError(f"model '{name}': {path} is larger than {MAX_JSON_BYTES:,} bytes")
        return json.loads(data.decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelLoadError(f"model '{name}': {path} is not valid JSON ({shorten(exc)})") from exc


def _refuse_special_files(directory: Path, name: str) -> None:
    """Refuse a device, FIFO or socket among the checkpoint's files (/dev/zero as tokenizer.json reads
    forever), and a folder of more than MAX_CHECKPOINT_FILES entries."""
    entries = [*directory.iterdir(), *(directory / "label_tokenizer").glob("*")]
    if len(entries) > MAX_CHECKPOINT_FILES:
        raise ModelLoadError(
            f"model '{name}': {shorten(directory)} holds more than {MAX_CHECKPOINT_FILES:,} entries; "
            "a checkpoint holds a few files"
        )
    for entry in entries:
        if not entry.is_file() and not entry.is_dir():
            raise ModelLoadError(
                f"model '{name}': {shorten(entry)} is not a regular file (a device, FIFO, socket or "
                "broken link); a checkpoint holds regular files only"
            )


def _require(name: str, field: str, value: Any, supported: tuple[str, ...]) -> None:
    if value not in supported:
        raise UnsupportedModelError(
            f"model '{name}': {field} {shorten(repr(value))} is not supported by gliclass-pipelines; "
            f"supported: {', '.join(supported)}"
        )


def _refuse_custom_code(directory: Path, config: dict[str, Any], name: str) -> None:
    """Refuse a checkpoint that would make transformers import Python code from it (or from the Hub)."""
    sections: dict[str, Any] = {
        "config.json": config,
        "config.json encoder_config": config.get("encoder_config"),
        "config.json label_model_config": config.get("label_model_config"),
    }
    for file in (
        "tokenizer_config.json",
        "label_tokenizer/tokenizer_config.json",
        "label_tokenizer/config.json",
    ):
        if (directory / file).is_file():
            sections[file] = _read_json(directory / file, name)
    for where, section in sections.items():
        if isinstance(section, dict) and section.get("auto_map"):
            raise UnsupportedModelError(
                f"model '{name}': {where} declares auto_map {shorten(repr(section['auto_map']))}, custom "
                "Python code that transformers would import from the checkpoint. gliclass-pipelines never "
                "runs a checkpoint's code (trust_remote_code=False); use a checkpoint built from the model "
                "types transformers ships."
            )
    known = _known_model_types()
    for field in ("encoder_config", "label_model_config"):
        section = config.get(field)
        if section is None:
            continue
        model_type = section.get("model_type", "deberta-v2") if isinstance(section, dict) else None
        if not isinstance(model_type, str) or model_type not in known:
            raise UnsupportedModelError(
                f"model '{name}': {field} has model_type {shorten(repr(model_type))}, which this "
                "transformers version does not know; loading it would need the checkpoint's own code "
                "(the reference calls AutoConfig.from_pretrained(..., trust_remote_code=True)), which "
                "gliclass-pipelines never runs."
            )


def _known_model_types() -> Any:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    return CONFIG_MAPPING


def _refuse_pickle_weights(directory: Path, name: str) -> None:
    if any(directory.glob("*.safetensors")):
        return
    pickles = sorted(p.name for p in directory.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise UnsupportedModelError(_pickle_message(name, pickles))


def _pickle_message(name: str, files: list[str]) -> str:
    return (
        f"model '{name}': refused the pickle weights {', '.join(files)}: loading a pickle file can run "
        "code, so gliclass-pipelines loads only safetensors weights. Convert the checkpoint where you "
        "trust it (load it, then save_pretrained(dir, safe_serialization=True)) and pass the "
        "directory with model.safetensors."
    )


def load_checkpoint(directory: Path, spec: str) -> tuple[Any, Any, Any]:
    """The model, its tokenizer and (bi-encoder) label tokenizer, through the reference's loading code.

    Never runs code from the checkpoint: it is checked first, then every from_pretrained gets
    ``trust_remote_code=False``, and the weights are read from safetensors only.
    """
    from gliclass import GLiClassModel
    from transformers import AutoTokenizer

    config = check_checkpoint_dir(directory, spec)
    name = shorten(spec)
    with _quiet_transformers():
        try:
            model = GLiClassModel.from_pretrained(
                str(directory), trust_remote_code=False, use_safetensors=True
            )
        except Exception as exc:
            raise ModelLoadError(_weights_message(directory, name, exc)) from exc
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(directory), trust_remote_code=False)
        except Exception as exc:
            raise ModelLoadError(
                f"model '{name}': loading the tokenizer in {shorten(directory)} failed: {shorten(exc, 500)}"
            ) from exc
        label_tokenizer = None
        if config.get("architecture_type") == "bi-encoder":
            label_tokenizer = _label_tokenizer(config.get("label_model_name"), directory, name)
    return model, tokenizer, label_tokenizer


def _weights_message(directory: Path, name: str, exc: BaseException) -> str:
    import pickle

    chain, cause = [], exc
    while cause is not None and len(chain) < 10:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    if any(isinstance(e, pickle.UnpicklingError) or "weights_only" in str(e) for e in chain):
        return _pickle_message(
            name, sorted(p.name for p in directory.iterdir() if p.suffix in PICKLE_SUFFIXES)
        )
    weights = sorted(p.name for p in directory.glob("*.safetensors")) or ["(no *.safetensors file)"]
    return (
        f"model '{name}': loading the weights {', '.join(weights)} in {shorten(directory)} failed: "
        f"{shorten(exc, 500)}. The checkpoint may be truncated or corrupt: download or copy it again."
    )


def _label_tokenizer(label_model: str | None, directory: Path, name: str) -> Any:
    from transformers import AutoTokenizer

    candidates = [c for c in (label_model, directory / "label_tokenizer") if c and os.path.isdir(c)]
    candidates += [label_model] if label_model and not os.path.isabs(str(label_model)) else []
    for candidate in candidates:
        try:
            return AutoTokenizer.from_pretrained(str(candidate), trust_remote_code=False)
        except Exception as exc:  # try the next candidate, report the last failure
            error = exc
    raise ModelLoadError(
        f"model '{name}': the bi-encoder label tokenizer {shorten(repr(label_model))} could not be loaded"
        + (f" ({shorten(error, 500)})" if candidates else "")
        + "; put it in a label_tokenizer/ folder beside config.json or make label_model_name reachable"
    )


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Loading prints progress bars and a config-type warning per model; workers' logs need neither."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


# ---------------------------------------------------------------------------------------------------------
# Remote checkpoints


def remote_cache_root() -> Path:
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit)
    hf_home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return Path(hf_home) / "gliclass-pipelines"


def _usable_cache_root() -> Path:
    """The cache folder, created and proven writable; else a ModelLoadError naming the variable to set."""
    root = remote_cache_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".write-test-", dir=root)
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        where = f"{CACHE_ENV}={shorten(root)}" if os.environ.get(CACHE_ENV) else f"the cache {shorten(root)}"
        raise ModelLoadError(
            f"{where} is not a writable directory ({exc.strerror or exc}); remote models are copied there. "
            f"Set {CACHE_ENV} to a writable directory."
        ) from exc
    return root


def source_version(fs: Any, path: str) -> str:
    """A short digest of what a remote checkpoint holds now: each file's name, size and version.

    The version is what the file system reports, most specific first: an ETag or MD5/CRC (object
    stores), a generation or version id, else the modification time. Two listings give the same
    digest exactly when no file was added, removed, resized or rewritten.
    """
    listing = fs.find(path, detail=True)
    if len(listing) > MAX_CHECKPOINT_FILES:
        raise ValueError(f"it holds more than {MAX_CHECKPOINT_FILES:,} files; a checkpoint holds a few")
    root = path.rstrip("/")
    entries = []
    for file, info in sorted(listing.items()):
        tag = next((info[k] for k in _VERSION_FIELDS if info.get(k) is not None), None)
        entries.append(f"{file[len(root) :]}\t{info.get('size')}\t{tag}")
    return hashlib.sha256("\n".join(entries).encode("utf-8")).hexdigest()[:12]


def copy_remote(uri: str) -> Path:
    """Copy a remote checkpoint directory into the local cache; return the copy.

    The copy is keyed on the URI and on :func:`source_version`, listed again on every call (each time
    a process loads the model): a source replaced in place is copied again, and older copies of the
    same URI are then removed. A process that already holds the model in memory keeps using it until
    it loads again (after eviction from the registry, or in a new worker).
    """
    import fsspec
    from filelock import FileLock

    shown = shorten(uri)
    try:
        fs, path = fsspec.core.url_to_fs(uri)
        if not fs.isdir(path):
            raise ModelLoadError(f"model '{shown}': no such directory on {fs.protocol}")
        version = source_version(fs, path)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"model '{shown}': listing it failed ({shorten(exc, 500, source=uri)})") from exc
    digest = hashlib.sha256(uri.encode("utf-8")).hexdigest()[:16]
    name = re.sub(r"[^\w.-]", "_", redact(uri).rstrip("/").rsplit("/", 1)[-1])[:64] or "model"
    root = _usable_cache_root()
    target = root / f"{name}-{digest}-{version}"
    if target.is_dir():
        return target
    with FileLock(str(target) + ".lock"):
        if target.is_dir():
            return target
        for stale in root.glob(f"{target.name}.partial-*"):
            shutil.rmtree(stale, ignore_errors=True)
        partial = root / f"{target.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            fs.get(path.rstrip("/") + "/", str(partial) + "/", recursive=True)
            check_checkpoint_dir(partial, uri)
            os.rename(partial, target)
        except ModelLoadError:
            raise
        except Exception as exc:
            raise ModelLoadError(
                f"model '{shown}': copying it to {shorten(target)} failed ({shorten(exc, 500, source=uri)})"
            ) from exc
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        _remove_older_copies(root, f"{name}-{digest}-", target)
    logger.info("copied %s (version %s) to %s", shown, version, target)
    return target


def _remove_older_copies(root: Path, prefix: str, keep: Path) -> None:
    """Delete this tool's earlier copies of one URI (named prefix + a 12-hex version, nothing else)."""
    pattern = re.compile(re.escape(prefix) + r"[0-9a-f]{12}")
    for old in root.glob(prefix + "*"):
        if old != keep and old.is_dir() and not old.is_symlink() and pattern.fullmatch(old.name):
            shutil.rmtree(old, ignore_errors=True)
            logger.info("removed %s, an older copy of a replaced remote model", old)


# ---------------------------------------------------------------------------------------------------------
# Devices and dtypes


def check_device(device: str | None) -> str:
    """Validate a device string's format (no torch import): auto, cpu, mps, cuda or cuda:N."""
    device = "auto" if device is None else str(device)
    if not _DEVICE.match(device):
        raise ConfigError(f"device must be 'auto', 'cpu', 'mps', 'cuda' or 'cuda:N', got {device!r}")
    return device


def check_dtype(dtype: str | None) -> str:
    dtype = "auto" if dtype is None else str(dtype).replace("torch.", "")
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return dtype


def resolve_device(device: str | None = "auto", engine_device: str | None = None) -> str:
    """An explicit device wins; then the engine's (a Spark task's GPU); then cuda:0 when present; then cpu."""
    device = check_device(device)
    if device == "cuda":
        return "cuda:0"
    if device != "auto":
        return device
    if engine_device:
        return check_device(engine_device)
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: str | None, device: str) -> str:
    """auto: float32 on CPU, bfloat16 on GPUs that support it, float16 on other GPUs."""
    dtype = check_dtype(dtype)
    if dtype != "auto":
        return dtype
    if not device.startswith("cuda"):
        return "float32"
    import torch

    with torch.cuda.device(device):
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"


# ---------------------------------------------------------------------------------------------------------
# One model per process

T = TypeVar("T")


@dataclass(frozen=True)
class ModelKey:
    """What identifies one loaded model in the registry: the same source at another device, dtype,
    length limit or precision is another model."""

    source: ModelSource
    device: str
    dtype: str
    max_length: int | None = None
    precision: str | None = None  # None: the dtype's own weights; e.g. "int8" for a quantized copy

    def __str__(self) -> str:
        extra = "".join(
            f", {k}={v}" for k, v in (("max_length", self.max_length), ("precision", self.precision)) if v
        )
        return f"{self.source} on {self.device} ({self.dtype}{extra})"


def max_models() -> int:
    """The registry's default size: $GLICLASS_PIPELINES_MAX_MODELS when set, else DEFAULT_MAX_MODELS."""
    raw = os.environ.get(MAX_MODELS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_MODELS
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"{MAX_MODELS_ENV} must be a positive integer, got {shorten(repr(raw))}")
    return int(raw)


class Registry:
    """A thread-safe, bounded, least-recently-used map from a key to an object built once per process.

    Concurrent callers asking for the same key wait for one build; different keys build in parallel.
    When a build makes it hold more than its limit, the least recently used entries are evicted: the
    registry drops them, collects garbage and empties the CUDA cache, so their memory is freed once no
    caller holds them any more. The limit is ``max_items`` if given (or set by :meth:`set_limit`), else
    :func:`max_models` (``$GLICLASS_PIPELINES_MAX_MODELS``, default 2).
    """

    def __init__(self, max_items: int | None = None) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._key_locks: dict[Hashable, threading.Lock] = {}
        self._limit = None if max_items is None else _positive(max_items)
        self.load_count = 0
        self.evict_count = 0
        self.load_seconds = 0.0

    @property
    def limit(self) -> int:
        return self._limit if self._limit is not None else max_models()

    def set_limit(self, max_items: int | None) -> None:
        """Hold at most ``max_items`` objects (None: back to the environment's or default limit)."""
        self._limit = None if max_items is None else _positive(max_items)
        limit = self.limit
        with self._lock:
            evicted = self._evict_over_limit(limit)
        _free(evicted)

    def get_or_load(self, key: Hashable, load: Callable[[], T]) -> T:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._items:
                    self._items.move_to_end(key)
                    return self._items[key]
            limit = self.limit  # a bad $GLICLASS_PIPELINES_MAX_MODELS fails before loading
            started = time.perf_counter()
            item = load()
            with self._lock:
                self._items[key] = item
                self.load_count += 1
                self.load_seconds += time.perf_counter() - started
                evicted = self._evict_over_limit(limit)
        _free(evicted)
        return item

    def _evict_over_limit(self, limit: int) -> list[tuple[Hashable, Any]]:
        evicted = []
        while len(self._items) > limit:
            evicted.append(self._items.popitem(last=False))
            self.evict_count += 1
        return evicted

    def keys(self) -> list[Hashable]:
        """The keys held, least recently used first."""
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            evicted = list(self._items.items())
            self._items.clear()
            self._key_locks.clear()
        _free(evicted)


def _positive(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"the model registry limit must be a positive integer, got {shorten(repr(value))}")
    return value


def _free(evicted: list[tuple[Hashable, Any]]) -> None:
    """Drop the registry's references to evicted objects and give their memory back."""
    if not evicted:
        return
    for key, _ in evicted:
        logger.info("evicted %s from the model registry (least recently used)", redact(key))
    evicted.clear()
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


REGISTRY = Registry()


def load_count() -> int:
    """How many models this process has loaded (cache hits do not count)."""
    return REGISTRY.load_count


def set_max_models(max_models: int | None) -> None:
    """Keep at most ``max_models`` models loaded in this process (least recently used evicted first).

    None returns to ``$GLICLASS_PIPELINES_MAX_MODELS`` or the default (2).
    """
    REGISTRY.set_limit(max_models)
