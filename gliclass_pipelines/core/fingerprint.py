"""What produced a result: a stable fingerprint of a job's model, taxonomy and settings, and its record.

The fingerprint hashes everything that changes a result: the model's resolved revision (a Hub commit,
a content hash of a local checkpoint's files, the listing digest of a remote one), the taxonomy
(labels, thresholds, prompt, examples, separator), the output kind, multi/single label, the long-text
settings, precision and backend, and the package and ``gliclass`` versions. Not the model's location:
a checkpoint copied elsewhere keeps its fingerprint. Nothing secret enters it: the provenance record
names the model redacted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from importlib import metadata
from pathlib import Path
from typing import Any

from gliclass_pipelines._common.redaction import redact
from gliclass_pipelines.errors import ModelLoadError
from gliclass_pipelines.model.sources import ModelSource

logger = logging.getLogger(__name__)

SHORT = 16  # hex characters of the fingerprint (64 bits): enough to tell runs apart
_CONTENT_CACHE: dict[tuple[Any, ...], str] = {}
_LOCK = threading.Lock()


def resolved_revision(source: ModelSource) -> str:
    """The model's version: ``hub:<commit>``, ``sha256:<content hash>`` or ``listing:<digest>``.

    A Hub id without a commit is resolved through the Hub cache (a download where it is not there yet, as
    the model needs anyway); where that fails the revision reads ``unresolved:...`` and a warning says so.
    """
    if source.kind == "local":
        return "sha256:" + content_hash(Path(source.location))
    if source.kind == "remote":
        import fsspec

        from gliclass_pipelines.model.cache import source_version

        try:
            fs, path = fsspec.core.url_to_fs(source.location)
            return "listing:" + source_version(fs, path)
        except Exception as exc:  # fsspec file systems raise many types for "not reachable"
            logger.warning("the version of %s could not be listed (%s)", source, type(exc).__name__)
            return "unresolved:remote"
    if (
        source.revision
        and len(source.revision) == 40
        and all(c in "0123456789abcdef" for c in source.revision)
    ):
        return "hub:" + source.revision
    try:
        snapshot = source.fetch()  # the snapshot folder of the Hub cache is named by its commit
    except ModelLoadError as exc:
        logger.warning("the revision of %s could not be resolved (%s)", source, type(exc).__name__)
        return f"unresolved:{source.revision or 'main'}"
    return (
        f"hub:{snapshot.name}" if snapshot.parent.name == "snapshots" else f"hub:{source.revision or 'main'}"
    )


def content_hash(folder: Path) -> str:
    """sha256 over a checkpoint folder's files (names and contents), computed once per process for a
    given listing (names, sizes, modification times): a second job on the same checkpoint reads nothing."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    listing = tuple((str(p.relative_to(folder)), *_size_and_time(p)) for p in files)
    key = (str(folder), listing)
    with _LOCK:
        if key in _CONTENT_CACHE:
            return _CONTENT_CACHE[key]
    digest = hashlib.sha256()
    for path, (name, _, _) in zip(files, listing, strict=True):
        digest.update(name.encode("utf-8", "surrogateescape") + b"\0")
        with open(path, "rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    value = digest.hexdigest()
    with _LOCK:
        _CONTENT_CACHE[key] = value
    return value


def _size_and_time(path: Path) -> tuple[int, int]:
    info = os.stat(path)
    return info.st_size, info.st_mtime_ns


def taxonomy_record(config: Any) -> dict[str, Any]:
    """The taxonomy and output settings of a job, as plain values in a fixed order."""
    taxonomy = config.labels
    options = config.options
    return {
        "labels": None if taxonomy is None else list(taxonomy.labels),
        "thresholds": None if taxonomy is None else taxonomy.thresholds_for(config.threshold),
        "prompt": options.get("prompt", None if taxonomy is None else taxonomy.prompt),
        "examples": options.get("examples", None if taxonomy is None else taxonomy.examples_as_dicts()),
        "separator": None if taxonomy is None else taxonomy.separator,
        "per_row_labels": config.per_row_labels,
        "threshold": config.threshold,
        "multi_label": config.multi_label,
        "output": config.output,
        "long_text": config.long_text,
        "max_length": config.max_length,
        "chunk_overlap": options.get("chunk_overlap"),
    }


def versions() -> dict[str, str]:
    from gliclass_pipelines import __version__

    try:
        gliclass = metadata.version("gliclass")
    except metadata.PackageNotFoundError:
        gliclass = "absent"
    return {"gliclass_pipelines": __version__, "gliclass": gliclass}


def provenance(config: Any) -> dict[str, Any]:
    """The record written beside results: what produced them, and its fingerprint."""
    source = ModelSource.parse(config.model)
    hashed = {
        "model": {"kind": source.kind, "revision": resolved_revision(source)},
        "taxonomy": taxonomy_record(config),
        "backend": {
            "engine": "onnxruntime" if config.precision == "int8" else "torch",
            "precision": config.precision,
            "device": config.device,
            "dtype": config.dtype,
        },
        "versions": versions(),
    }
    if source.kind == "hub":
        hashed["model"]["repo"] = source.location
    text = json.dumps(hashed, sort_keys=True, ensure_ascii=True, default=str)
    taxonomy = json.dumps(hashed["taxonomy"], sort_keys=True, ensure_ascii=True, default=str)
    return {
        "fingerprint": hashlib.sha256(text.encode("ascii")).hexdigest()[:SHORT],
        "taxonomy_fingerprint": hashlib.sha256(taxonomy.encode("ascii")).hexdigest()[:SHORT],
        "model_source": redact(str(source)),
        **hashed,
    }
