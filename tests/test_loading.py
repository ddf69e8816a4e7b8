from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import weakref
from pathlib import Path

import fsspec
import pytest
from memory_fs import put_in_memory_fs

from gliclass_pipelines import Classifier, ConfigError, ModelLoadError, UnsupportedModelError
from gliclass_pipelines.core.outcomes import LoadReport, RunStats
from gliclass_pipelines.model.sources import (
    DEFAULT_MAX_MODELS,
    MAX_MODELS_ENV,
    REGISTRY,
    ModelKey,
    ModelSource,
    Registry,
    check_device,
    copy_remote,
    load_count,
    resolve_device,
    resolve_dtype,
    set_max_models,
)


@pytest.fixture
def remote_cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "remote-cache"
    monkeypatch.setenv("GLICLASS_PIPELINES_CACHE", str(root))
    return root


def fresh_copy(tiny_checkpoint: Path, tmp_path: Path, name: str = "copy") -> Path:
    """A checkpoint at a new path, so the registry has not seen it yet."""
    return Path(shutil.copytree(tiny_checkpoint, tmp_path / name))


@pytest.mark.parametrize(
    ("spec", "kind", "location", "revision"),
    [
        ("knowledgator/gliclass-edge-v3.0", "hub", "knowledgator/gliclass-edge-v3.0", None),
        ("knowledgator/gliclass-edge-v3.0@a1b2c3", "hub", "knowledgator/gliclass-edge-v3.0", "a1b2c3"),
        ("gs://bucket/models/edge", "remote", "gs://bucket/models/edge", None),
        ("file:///opt/models/edge", "local", "/opt/models/edge", None),
        ("/opt/models/edge", "local", "/opt/models/edge", None),
    ],
)
def test_model_source_formats(spec, kind, location, revision):
    source = ModelSource.parse(spec)
    assert (source.kind, source.location, source.revision) == (kind, location, revision)


@pytest.mark.parametrize("spec", ["", "  ", "not a model id", "org/name@", "a/b/c", 42])
def test_bad_model_source_is_a_config_error(spec):
    with pytest.raises(ConfigError, match="model"):
        ModelSource.parse(spec)


def test_loads_by_local_path_and_file_uri(tiny_checkpoint, tmp_path):
    path = fresh_copy(tiny_checkpoint, tmp_path)
    by_path = Classifier.load(str(path), device="cpu")
    by_uri = Classifier.load(f"file://{path}", device="cpu")
    assert by_path is by_uri
    result = by_path.classify(["a text about games"], ["games", "science"], return_all=True)
    assert [r["label"] for r in result[0]] and len(result[0]) == 2


def test_loads_by_remote_fsspec_uri(tiny_checkpoint, remote_cache):
    uri = "memory://models/tiny-remote-ok"
    put_in_memory_fs(tiny_checkpoint, uri)
    clf = Classifier.load(uri, device="cpu")
    local = Classifier.load(str(tiny_checkpoint), device="cpu")
    texts = ["a library for parsing xml", "a small arcade game"]
    assert clf.classify(texts, ["libs", "games"], return_all=True) == local.classify(
        texts, ["libs", "games"], return_all=True
    )
    copies = [p for p in remote_cache.iterdir() if p.is_dir()]
    assert len(copies) == 1 and (copies[0] / "config.json").is_file()


def test_two_loads_in_one_process_give_one_load(tiny_checkpoint, tmp_path):
    path = fresh_copy(tiny_checkpoint, tmp_path)
    before = load_count()
    first = Classifier.load(str(path), device="cpu")
    second = Classifier.load(str(path), device="cpu", dtype="float32")
    assert first is second
    assert load_count() - before == 1


def test_four_concurrent_threads_give_one_load(tiny_checkpoint, tmp_path):
    path = fresh_copy(tiny_checkpoint, tmp_path)
    before = load_count()
    start = threading.Barrier(4)
    got: list[Classifier] = []

    def worker() -> None:
        start.wait()
        got.append(Classifier.load(str(path), device="cpu"))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(got) == 4 and all(clf is got[0] for clf in got)
    assert load_count() - before == 1


def test_load_report_is_taken_once():
    report = LoadReport(0.5)
    assert report.take() == RunStats(model_loads=1, model_load_seconds=0.5)
    assert report.take() == RunStats() and LoadReport().take() == RunStats()


def test_a_load_is_counted_once_by_the_runs_sharing_the_model(tiny_checkpoint, tmp_path):
    """Eight threads classify with a model loaded once: one run reports the load, with its seconds; a
    later registry hit for the same model and its runs report none."""
    clf = Classifier.load(str(fresh_copy(tiny_checkpoint, tmp_path)), device="cpu")
    start = threading.Barrier(8)
    stats: list[RunStats] = []

    def worker() -> None:
        start.wait()
        stats.append(clf.run(["a text library", None], ["libs", "games"]).stats)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = RunStats()
    for one in stats:
        total.add(one)
    assert len(stats) == 8 and total.rows == 16
    assert total.model_loads == 1 and total.model_load_seconds == clf.load_seconds > 0
    again = Classifier.load(str(tmp_path / "copy"), device="cpu")
    assert again is clf and again.run(["a game"], ["libs", "games"]).stats.model_loads == 0


def test_registry_builds_each_key_once_under_contention():
    registry = Registry()
    calls = []
    start = threading.Barrier(8)

    def load():
        calls.append(1)
        return object()

    def worker(key):
        start.wait()
        registry.get_or_load(key, load)

    threads = [threading.Thread(target=worker, args=(i % 2,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 2 and registry.load_count == 2


def test_interrupted_remote_copy_leaves_no_usable_half_copy(tiny_checkpoint, remote_cache, monkeypatch):
    uri = "memory://models/tiny-remote-interrupted"
    put_in_memory_fs(tiny_checkpoint, uri)
    fs_class = type(fsspec.filesystem("memory"))
    real_get = fs_class.get

    def get_half_then_fail(self, rpath, lpath, recursive=False, **kwargs):
        Path(lpath).mkdir(parents=True, exist_ok=True)
        (Path(lpath) / "config.json").write_bytes(self.cat_file(rpath.rstrip("/") + "/config.json"))
        raise ConnectionError("network dropped mid-copy")

    monkeypatch.setattr(fs_class, "get", get_half_then_fail)
    with pytest.raises(ModelLoadError, match="network dropped"):
        copy_remote(uri)
    assert [p.name for p in remote_cache.iterdir() if p.is_dir()] == []

    monkeypatch.setattr(fs_class, "get", real_get)
    target = copy_remote(uri)
    assert (target / "config.json").is_file() and any(target.glob("*.safetensors"))


def test_offline_hub_id_error_names_the_model_and_the_fix():
    with pytest.raises(ModelLoadError) as error:
        Classifier.load("knowledgator/gliclass-edge-v3.0", device="cpu")
    message = str(error.value)
    assert "knowledgator/gliclass-edge-v3.0" in message
    assert "HF_HUB_OFFLINE=0" in message
    assert "local checkpoint directory" in message


def test_directory_without_config_json(tmp_path):
    with pytest.raises(ModelLoadError, match="config.json"):
        Classifier.load(str(tmp_path), device="cpu")


@pytest.mark.parametrize(
    ("field", "value", "supported"),
    [
        ("architecture_type", "decoder-kv", "uni-encoder, bi-encoder"),
        ("scorer_type", "decoder-kv", "simple, weighted-dot, mlp, hopfield, cross-attn"),
        ("pooling_strategy", "attention", "first, last, avg, max"),
    ],
)
def test_unsupported_models_are_refused_with_the_supported_ones(
    tiny_checkpoint, tmp_path, field, value, supported
):
    path = fresh_copy(tiny_checkpoint, tmp_path)
    config = json.loads((path / "config.json").read_text())
    config[field] = value
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedModelError, match=supported) as error:
        Classifier.load(str(path), device="cpu")
    assert value in str(error.value)


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"scorer_type": "cross-attn", "pooling_strategy": "first"}, ["scorer_type 'cross-attn'", "'first'"]),
        (
            {"architecture_type": "decoder-kv", "scorer_type": "decoder-kv", "use_lstm": True},
            ["architecture_type 'decoder-kv'", "scorer_type 'decoder-kv'", "use_lstm=True"],
        ),
        ({"use_lstm": True, "extract_text_features": True}, ["use_lstm=True", "extract_text_features=True"]),
    ],
)
def test_a_refusal_names_every_unsupported_feature_in_order(tiny_checkpoint, tmp_path, changes, named):
    path = fresh_copy(tiny_checkpoint, tmp_path)
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, **changes}))
    with pytest.raises(UnsupportedModelError) as error:
        Classifier.load(str(path), device="cpu")
    message = str(error.value)
    positions = [message.find(feature) for feature in named]
    assert -1 not in positions and positions == sorted(positions), message


def test_broken_config_json_names_the_file(tiny_checkpoint, tmp_path):
    path = fresh_copy(tiny_checkpoint, tmp_path)
    (path / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="config.json"):
        Classifier.load(str(path), device="cpu")


def test_truncated_weights_name_the_file(tiny_checkpoint, tmp_path):
    path = fresh_copy(tiny_checkpoint, tmp_path)
    weights = next(path.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])
    with pytest.raises(ModelLoadError, match=weights.name):
        Classifier.load(str(path), device="cpu")


def test_device_resolution_order():
    assert resolve_device("cpu", engine_device="cuda:1") == "cpu"
    assert resolve_device("auto", engine_device="cuda:1") == "cuda:1"
    assert resolve_device("cuda") == "cuda:0"
    assert resolve_device("auto") == ("cuda:0" if _cuda() else "cpu")
    assert resolve_dtype("auto", "cpu") == "float32"
    assert resolve_dtype("bfloat16", "cpu") == "bfloat16"
    with pytest.raises(ConfigError, match="device"):
        check_device("gpu0")
    with pytest.raises(ConfigError, match="dtype"):
        resolve_dtype("int8", "cpu")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def test_import_is_cheap():
    code = (
        "import sys, gliclass_pipelines, gliclass_pipelines.model.sources,"
        "gliclass_pipelines.taxonomy.taxonomy;"
        "heavy = [m for m in ('torch', 'pyspark', 'apache_beam', 'transformers') if m in sys.modules];"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_registry_counter_is_shared(tiny_checkpoint):
    Classifier.load(str(tiny_checkpoint), device="cpu")
    assert load_count() == REGISTRY.load_count >= 1


def test_registry_evicts_the_least_recently_used():
    registry = Registry(max_items=2)
    built = []

    def load(key):
        return lambda: built.append(key) or f"model {key}"

    registry.get_or_load("a", load("a"))
    registry.get_or_load("b", load("b"))
    assert registry.get_or_load("a", load("a")) == "model a"  # a hit: a is now the most recent
    registry.get_or_load("c", load("c"))
    assert registry.keys() == ["a", "c"] and registry.evict_count == 1
    registry.get_or_load("b", load("b"))  # evicted, so built again; a goes now
    assert registry.keys() == ["c", "b"]
    assert built == ["a", "b", "c", "b"] and registry.load_count == 4
    registry.set_limit(1)
    assert registry.keys() == ["b"]


def test_registry_limit_from_the_environment_and_the_function(monkeypatch):
    monkeypatch.delenv(MAX_MODELS_ENV, raising=False)
    assert Registry().limit == DEFAULT_MAX_MODELS == 2
    monkeypatch.setenv(MAX_MODELS_ENV, "5")
    assert Registry().limit == 5 and Registry(max_items=3).limit == 3
    monkeypatch.setenv(MAX_MODELS_ENV, "0")
    built = []
    with pytest.raises(ConfigError, match=MAX_MODELS_ENV):
        Registry().get_or_load("a", lambda: built.append(1))
    assert built == []  # refused before loading anything
    with pytest.raises(ConfigError, match="positive integer"):
        Registry(max_items=0)


def test_concurrent_loads_under_a_limit_of_one_still_load_once():
    registry = Registry(max_items=1)
    calls = []
    start = threading.Barrier(8)

    def load():
        calls.append(1)
        return object()

    got = []
    threads = [
        threading.Thread(target=lambda: (start.wait(), got.append(registry.get_or_load("k", load))))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len(got) == 8 and all(item is got[0] for item in got)


def test_a_limit_of_one_evicts_and_frees_the_older_model(tiny_checkpoint, tmp_path):
    first, second = (
        fresh_copy(tiny_checkpoint, tmp_path, "first"),
        fresh_copy(tiny_checkpoint, tmp_path, "second"),
    )
    before = load_count()
    set_max_models(1)
    try:
        clf = Classifier.load(str(first), device="cpu")
        gone = weakref.ref(clf)
        del clf
        Classifier.load(str(second), device="cpu")
        assert len(REGISTRY.keys()) == 1 and gone() is None  # dropped and collected
        Classifier.load(str(first), device="cpu")
        assert load_count() - before == 3
    finally:
        set_max_models(None)


def test_model_key_separates_device_dtype_and_precision():
    source = ModelSource.parse("/opt/models/edge")
    key = ModelKey(source, "cpu", "float32")
    assert key == ModelKey(source, "cpu", "float32") and len({key, ModelKey(source, "cpu", "bfloat16")}) == 2
    assert key != ModelKey(source, "cpu", "float32", precision="int8")
    assert str(ModelKey(source, "cuda:0", "float16", precision="int8")) == (
        "/opt/models/edge on cuda:0 (float16, precision=int8)"
    )
