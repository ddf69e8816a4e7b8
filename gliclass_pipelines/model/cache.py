"""Remote checkpoints (any fsspec URI) copied into a local cache, keyed on the source's version.

The copy happens under a file lock and ends with an atomic rename, so an interrupted copy never leaves
a half-written model that looks usable. See :func:`copy_remote` for what is checked on each load.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from gliclass_pipelines._common.redaction import redact, shorten
from gliclass_pipelines.errors import ModelLoadError
from gliclass_pipelines.model.checkpoint import MAX_CHECKPOINT_FILES, check_checkpoint_dir

logger = logging.getLogger(__name__)

CACHE_ENV = "GLICLASS_PIPELINES_CACHE"
# Where fsspec file systems report a file's version, most specific first.
_VERSION_FIELDS = (
    "ETag", "etag", "md5Hash", "md5", "crc32c", "generation", "VersionId", "version_id",
    "mtime", "LastModified", "last_modified", "updated", "modified", "created",
)  # fmt: skip


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
