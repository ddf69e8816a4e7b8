"""Model sources, and device and dtype resolution; the front door to checkpoint loading.

A model source is a Hub id with an optional revision (``org/name@rev``), a local directory, or a
remote URI of any fsspec protocol (``gs://``, ``s3://``, ``hdfs://``, ``memory://`` ...); remote ones
are copied into a local cache keyed on their version (:mod:`gliclass_pipelines.model.cache`). Every
checkpoint is checked before it is loaded and never runs its own code
(:mod:`gliclass_pipelines.model.checkpoint`), and its weights, config and tokenizer must belong together
(:mod:`gliclass_pipelines.model.checkpoint_checks`); loaded models live in a bounded per-process registry
(:mod:`gliclass_pipelines.model.registry`). Every message that names a source passes it through
:func:`gliclass_pipelines._common.redaction.redact`.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from gliclass_pipelines._common.redaction import redact, shorten
from gliclass_pipelines.errors import ConfigError, ModelLoadError
from gliclass_pipelines.model.cache import CACHE_ENV, copy_remote, remote_cache_root, source_version
from gliclass_pipelines.model.checkpoint import (
    MAX_CHECKPOINT_FILES,
    MAX_JSON_BYTES,
    PICKLE_SUFFIXES,
    check_checkpoint_dir,
    load_checkpoint,
)
from gliclass_pipelines.model.combinations import (
    SUPPORTED_ARCHITECTURES,
    SUPPORTED_POOLINGS,
    SUPPORTED_SCORERS,
)
from gliclass_pipelines.model.registry import (
    DEFAULT_MAX_MODELS,
    MAX_MODELS_ENV,
    REGISTRY,
    Registry,
    load_count,
    max_models,
    set_max_models,
)

__all__ = [
    "CACHE_ENV",
    "DEFAULT_MAX_MODELS",
    "DTYPES",
    "MAX_CHECKPOINT_FILES",
    "MAX_JSON_BYTES",
    "MAX_MODELS_ENV",
    "PICKLE_SUFFIXES",
    "REGISTRY",
    "SUPPORTED_ARCHITECTURES",
    "SUPPORTED_POOLINGS",
    "SUPPORTED_SCORERS",
    "ModelKey",
    "ModelSource",
    "Registry",
    "check_checkpoint_dir",
    "check_device",
    "check_dtype",
    "copy_remote",
    "hub_unavailable_message",
    "load_checkpoint",
    "load_count",
    "max_models",
    "remote_cache_root",
    "resolve_device",
    "resolve_dtype",
    "set_max_models",
    "source_version",
]

logger = logging.getLogger(__name__)

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
