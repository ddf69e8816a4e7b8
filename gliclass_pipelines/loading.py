"""Model sources, the per-process model registry, and device and dtype resolution.

A model source is a Hub id with an optional revision (``org/name@rev``), a local directory, or a
remote URI of any fsspec protocol (``gs://``, ``s3://``, ``hdfs://``, ``memory://`` ...). Remote
checkpoints are copied once per machine into a local cache, under a file lock and with an atomic
rename, so an interrupted copy never leaves a half-written model that looks usable.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from gliclass_pipelines.errors import ConfigError, ModelLoadError, UnsupportedModelError

logger = logging.getLogger(__name__)

SUPPORTED_ARCHITECTURES = ("uni-encoder", "bi-encoder")
SUPPORTED_POOLINGS = ("first", "last", "avg", "max", "sum", "rms", "abs_max", "abs_avg")
SUPPORTED_SCORERS = ("simple", "weighted-dot", "mlp", "hopfield")
DTYPES = ("auto", "float32", "float16", "bfloat16")

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
            raise ConfigError(f"model must be a Hub id, a local directory or a URI, got {spec!r}")
        spec = spec.strip()
        match = _URI.match(spec)
        if match:
            if match.group(1) == "file":
                return cls("local", os.path.abspath(spec[len("file://") :]))
            return cls("remote", spec)
        if spec.startswith(("/", ".", "~")) or os.path.isdir(spec):
            return cls("local", os.path.abspath(os.path.expanduser(spec)))
        repo_id, _, revision = spec.partition("@")
        if not _HUB_ID.match(repo_id) or (_ and not revision):
            raise ConfigError(
                f"model {spec!r} is neither an existing directory, a URI (gs://, s3://, file://...), "
                "nor a Hub id like 'knowledgator/gliclass-edge-v3.0' (optionally with '@<revision>')"
            )
        return cls("hub", repo_id, revision or None)

    def __str__(self) -> str:
        return f"{self.location}@{self.revision}" if self.revision else self.location

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
    detail = f" ({type(exc).__name__}: {exc})" if exc is not None else ""
    return (
        f"Could not load model '{spec}': {reason}{detail}.\n"
        "To fix it, do one of:\n"
        "  - set HF_HUB_OFFLINE=0 on a machine that can reach the Hub;\n"
        f"  - pre-download it where the Hub is reachable: `hf download {spec.split('@')[0]}` "
        "(or huggingface_hub.snapshot_download), then copy the HF_HOME cache here;\n"
        "  - pass a local checkpoint directory or a remote URI (gs://, s3://, hdfs://...) as the model;\n"
        "  - for a quick offline try: `gliclass-pipelines make-test-model DIR` and pass DIR."
    )


def check_checkpoint_dir(directory: Path, spec: str) -> dict[str, Any]:
    """Read and check a checkpoint's config.json. Refuse what this library does not run."""
    config_file = directory / "config.json"
    if not directory.is_dir():
        raise ModelLoadError(f"model '{spec}': directory {directory} does not exist")
    if not config_file.is_file():
        raise ModelLoadError(
            f"model '{spec}': {config_file} is missing. A GLiClass checkpoint directory holds config.json, "
            "the weights (model.safetensors) and the tokenizer files, as written by save_pretrained."
        )
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"model '{spec}': {config_file} is not valid JSON ({exc})") from exc
    if not isinstance(config, dict) or config.get("model_type") != "GLiClass":
        raise UnsupportedModelError(
            f"model '{spec}': {config_file} does not describe a GLiClass model "
            f"(model_type={config.get('model_type') if isinstance(config, dict) else None!r})"
        )
    _require(
        spec, "architecture_type", config.get("architecture_type", "uni-encoder"), SUPPORTED_ARCHITECTURES
    )
    _require(spec, "pooling_strategy", config.get("pooling_strategy", "first"), SUPPORTED_POOLINGS)
    _require(spec, "scorer_type", config.get("scorer_type", "simple"), SUPPORTED_SCORERS)
    for flag in ("use_lstm", "layer_wise", "extract_text_features", "multimodal"):
        if config.get(flag):
            raise UnsupportedModelError(f"model '{spec}': {flag}=true is not supported by gliclass-pipelines")
    return config


def _require(spec: str, field: str, value: Any, supported: tuple[str, ...]) -> None:
    if value not in supported:
        raise UnsupportedModelError(
            f"model '{spec}': {field} '{value}' is not supported by gliclass-pipelines; "
            f"supported: {', '.join(supported)}"
        )


def load_checkpoint(directory: Path, spec: str) -> tuple[Any, Any, Any]:
    """The model, its tokenizer and (bi-encoder) label tokenizer, through the reference's loading code."""
    from gliclass import GLiClassModel
    from transformers import AutoTokenizer

    config = check_checkpoint_dir(directory, spec)
    try:
        with _quiet_transformers():
            model = GLiClassModel.from_pretrained(str(directory))
    except Exception as exc:
        weights = sorted(p.name for p in directory.glob("*.safetensors")) or ["(no *.safetensors file)"]
        raise ModelLoadError(
            f"model '{spec}': loading the weights {', '.join(weights)} in {directory} failed: {exc}. "
            "The checkpoint may be truncated or corrupt: download or copy it again."
        ) from exc
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(directory))
    except Exception as exc:
        raise ModelLoadError(f"model '{spec}': loading the tokenizer in {directory} failed: {exc}") from exc
    label_tokenizer = None
    if config.get("architecture_type") == "bi-encoder":
        label_tokenizer = _label_tokenizer(config.get("label_model_name"), directory, spec)
    return model, tokenizer, label_tokenizer


def _label_tokenizer(name: str | None, directory: Path, spec: str) -> Any:
    from transformers import AutoTokenizer

    candidates = [c for c in (name, directory / "label_tokenizer") if c and os.path.isdir(c)]
    candidates += [name] if name and not os.path.isabs(str(name)) else []
    for candidate in candidates:
        try:
            return AutoTokenizer.from_pretrained(str(candidate))
        except Exception as exc:  # try the next candidate, report the last failure
            error = exc
    raise ModelLoadError(
        f"model '{spec}': the bi-encoder label tokenizer {name!r} could not be loaded"
        + (f" ({error})" if candidates else "")
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
    explicit = os.environ.get("GLICLASS_PIPELINES_CACHE")
    if explicit:
        return Path(explicit)
    hf_home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return Path(hf_home) / "gliclass-pipelines"


def copy_remote(uri: str) -> Path:
    """Copy a remote checkpoint directory into the local cache once per machine; return the copy."""
    import fsspec
    from filelock import FileLock

    digest = hashlib.sha256(uri.encode("utf-8")).hexdigest()[:16]
    name = re.sub(r"[^\w.-]", "_", uri.rstrip("/").rsplit("/", 1)[-1])[:64] or "model"
    root = remote_cache_root()
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"{name}-{digest}"
    if target.is_dir():
        return target
    with FileLock(str(target) + ".lock"):
        if target.is_dir():
            return target
        for stale in root.glob(f"{target.name}.partial-*"):
            shutil.rmtree(stale, ignore_errors=True)
        partial = root / f"{target.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            fs, path = fsspec.core.url_to_fs(uri)
            if not fs.isdir(path):
                raise ModelLoadError(f"model '{uri}': no such directory on {fs.protocol}")
            fs.get(path.rstrip("/") + "/", str(partial) + "/", recursive=True)
            check_checkpoint_dir(partial, uri)
            os.rename(partial, target)
        except ModelLoadError:
            raise
        except Exception as exc:
            raise ModelLoadError(f"model '{uri}': copying it to {target} failed ({exc})") from exc
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    logger.info("copied %s to %s", uri, target)
    return target


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


class Registry:
    """A thread-safe map from a key to an object built once per process.

    Concurrent callers asking for the same key wait for one build; different keys build in parallel.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[Hashable, Any] = {}
        self._key_locks: dict[Hashable, threading.Lock] = {}
        self.load_count = 0
        self.load_seconds = 0.0

    def get_or_load(self, key: Hashable, load: Callable[[], T]) -> T:
        with self._lock:
            if key in self._items:
                return self._items[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._items:
                    return self._items[key]
            started = time.perf_counter()
            item = load()
            with self._lock:
                self._items[key] = item
                self.load_count += 1
                self.load_seconds += time.perf_counter() - started
            return item

    def keys(self) -> list[Hashable]:
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._key_locks.clear()


REGISTRY = Registry()


def load_count() -> int:
    """How many models this process has loaded (cache hits do not count)."""
    return REGISTRY.load_count
