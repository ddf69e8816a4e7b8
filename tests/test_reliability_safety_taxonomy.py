"""Hostile taxonomies: expansion bombs, oversized files, label caps, Unicode twins, empty groups, per-row
hierarchies nested too deeply or read from JSON objects.

The expansion bombs run in a subprocess under an address-space limit (RLIMIT_AS), so a regression
fails with a MemoryError instead of taking the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from reliability_support import ATTACKS, INPUTS, case

from gliclass_pipelines import ConfigError, cli
from gliclass_pipelines.taxonomy.labels import MAX_LABELS_ENV, max_labels
from gliclass_pipelines.taxonomy.taxonomy import Taxonomy

pytest_plugins = ["reliability_support"]

resource = pytest.importorskip("resource", reason="RLIMIT_AS needs the POSIX resource module")

ADDRESS_SPACE = 768 * 1024 * 1024  # plain Python plus PyYAML fits well inside; a bomb does not

BILLION_LAUGHS = textwrap.dedent(
    """\
    a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
    b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
    c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
    d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
    e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
    f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
    g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
    h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
    i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
    """
)

# Distinct labels (so no duplicate check stops it early), multiplied by nested aliases into groups.
WIDE = (
    "w: &w [" + ",".join(f"l{i}" for i in range(40)) + "]\n"
    "x: &x {a: *w, b: *w, c: *w, d: *w, e: *w, f: *w, g: *w, h: *w}\n"
    "y: &y {a: *x, b: *x, c: *x, d: *x, e: *x, f: *x, g: *x, h: *x}\n"
    "z: &z {a: *y, b: *y, c: *y, d: *y, e: *y, f: *y, g: *y, h: *y}\n"
    "labels: {a: *z, b: *z, c: *z, d: *z, e: *z, f: *z, g: *z, h: *z}\n"
)

CHILD = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
from gliclass_pipelines.errors import ConfigError
from gliclass_pipelines.taxonomy.taxonomy import Taxonomy
try:
    taxonomy = Taxonomy.from_file(sys.argv[1])
except ConfigError as error:
    print("ConfigError:", error)
    sys.exit(0)
except MemoryError:
    print("MemoryError")
    sys.exit(3)
print("loaded", len(taxonomy))
sys.exit(4)
"""


def load_under_limit(
    path: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess, float]:
    code = CHILD.format(limit=ADDRESS_SPACE)
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    return result, time.perf_counter() - started


@case(
    ATTACKS,
    "taxonomy YAML bombs under a 768 MiB address-space limit: a 'billion laughs' file (9 levels of "
    "nested aliases, 9^9 labels) and a 'wide' one (40 distinct labels x 8^4 groups through aliases)",
    "ConfigError naming YAML anchors/aliases and the line, in well under a second; no MemoryError",
)
@pytest.mark.parametrize("name, text", [("billion-laughs", BILLION_LAUGHS), ("wide", WIDE)])
def test_yaml_bombs_are_refused_under_a_memory_limit(tmp_path, reliability, name, text):
    path = tmp_path / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    result, seconds = load_under_limit(path)
    assert result.returncode == 0, (result.stdout, result.stderr[-2000:])
    assert "anchors and aliases" in result.stdout and "line 1" in result.stdout
    reliability.set(**{f"{name}_bytes": path.stat().st_size, f"{name}_seconds": round(seconds, 2)})


@case(
    ATTACKS,
    "taxonomy larger than the label cap: 2,001 labels with GLICLASS_PIPELINES_MAX_LABELS=2000 (a "
    "plain file in a subprocess under the memory limit, and a nested YAML); the default cap",
    "ConfigError naming the cap and how to raise it; default Taxonomy.MAX_LABELS = 100,000",
)
def test_label_cap_is_enforced_and_named(tmp_path, monkeypatch, reliability):
    flat = tmp_path / "many.txt"
    flat.write_text("\n".join(f"label {i}" for i in range(2001)), encoding="utf-8")
    result, _ = load_under_limit(flat, {MAX_LABELS_ENV: "2000"})
    assert result.returncode == 0, (result.stdout, result.stderr[-2000:])
    assert "more than 2,000 labels" in result.stdout and MAX_LABELS_ENV in result.stdout

    nested = tmp_path / "nested.yaml"
    groups = {f"g{g}": [f"l{i}" for i in range(100)] for g in range(30)}
    nested.write_text("\n".join(f"{k}: [{', '.join(v)}]" for k, v in groups.items()), encoding="utf-8")
    monkeypatch.setenv(MAX_LABELS_ENV, "2000")
    with pytest.raises(ConfigError, match="more than 2,000 labels.*MAX_LABELS"):
        Taxonomy.from_file(nested)
    with pytest.raises(ConfigError, match="more than 2,000 labels"):
        Taxonomy(labels=tuple(f"x{i}" for i in range(2001)))
    assert len(Taxonomy.from_labels([f"x{i}" for i in range(2000)])) == 2000

    monkeypatch.delenv(MAX_LABELS_ENV)
    assert max_labels(Taxonomy.MAX_LABELS) == Taxonomy.MAX_LABELS == 100_000
    monkeypatch.setattr(Taxonomy, "MAX_LABELS", 10)
    with pytest.raises(ConfigError, match="more than 10 labels"):
        Taxonomy.from_labels({"g": [f"x{i}" for i in range(11)]})
    monkeypatch.setenv(MAX_LABELS_ENV, "lots")
    with pytest.raises(ConfigError, match=f"{MAX_LABELS_ENV} must be a positive integer"):
        Taxonomy.from_labels(["a"])
    reliability.set(cap_default=100_000)


@case(
    ATTACKS,
    "oversized taxonomy input: a file over Taxonomy.MAX_FILE_BYTES, /dev/zero as a taxonomy file, "
    "the same size passed as YAML text, 100,000 levels of nested JSON lists",
    "ConfigError naming the size bound (only that many bytes read), or 'nested too deeply'",
)
def test_oversized_taxonomy_inputs_are_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(Taxonomy, "MAX_FILE_BYTES", 4096)
    big = tmp_path / "big.yaml"
    big.write_text("- label\n" * 1000, encoding="utf-8")
    with pytest.raises(ConfigError, match="larger than 4,096 bytes"):
        Taxonomy.from_file(big)
    with pytest.raises(ConfigError, match="larger than Taxonomy.MAX_FILE_BYTES"):
        Taxonomy.from_yaml("- label\n" * 1000)
    if os.path.exists("/dev/zero"):
        with pytest.raises(ConfigError, match="larger than 4,096 bytes"):
            Taxonomy.from_file("/dev/zero")
    monkeypatch.undo()
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + '"a"' + "]" * 100_000, encoding="utf-8")
    with pytest.raises(ConfigError, match="nested too deeply"):
        Taxonomy.from_file(deep)


@case(
    ATTACKS,
    "labels that differ only by Unicode form: café NFC vs NFD, fullwidth ｓｐｏｒｔｓ vs sports, "
    "sp<U+200B>orts (zero-width space), in a list and in a YAML file",
    "ConfigError 'duplicate label' naming both spellings",
)
@pytest.mark.parametrize(
    "first, second",
    [
        ("caf\u00e9", "cafe\u0301"),
        ("sports", "\uff53\uff50\uff4f\uff52\uff54\uff53"),
        ("sports", "sp\u200borts"),
    ],
    ids=["nfc-nfd", "fullwidth", "zero-width"],
)
def test_unicode_twins_are_duplicates(tmp_path, first, second):
    with pytest.raises(ConfigError, match="duplicate label") as error:
        Taxonomy.from_labels([first, "other", second])
    assert repr(first) in str(error.value) and repr(second) in str(error.value)
    path = tmp_path / "twins.yaml"
    path.write_text(f"topic:\n  - {first}\n  - {second}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="duplicate label"):
        Taxonomy.from_file(path)


@case(
    ATTACKS,
    "a taxonomy group with no labels: 'finance: []', 'finance: {{}}' and 'finance:' in YAML, "
    "and {{'finance': []}} in Python",
    "ConfigError naming the group where it is written (not a later threshold error)",
)
@pytest.mark.parametrize("value", ["[]", "{}", ""])
def test_empty_groups_are_refused_where_written(tmp_path, value):
    path = tmp_path / "empty-group.yaml"
    path.write_text(f"labels:\n  sports: [football]\n  finance: {value}\n", encoding="utf-8")
    with pytest.raises(
        ConfigError, match=r"empty-group.yaml: group 'finance' at labels\['finance'\] has no labels"
    ):
        Taxonomy.from_file(path)
    with pytest.raises(ConfigError, match="group 'finance'"):
        Taxonomy.from_labels({"sports": ["football"], "finance": []})


@case(
    ATTACKS,
    "per-row labels nested 5,000 levels deep, as a mapping (one row's hierarchy) and as lists, beside a "
    "plain row, in one Classifier.run",
    "the deep rows fail alone (invalid_labels, 'nested too deeply'); the plain row is classified",
)
def test_per_row_labels_nested_too_deeply_fail_their_row_alone(clf, debian_texts):
    tree: object = {"x": ["leaf"]}
    chain: object = ["leaf"]
    for _ in range(5_000):
        tree, chain = {"g": tree}, [chain]
    out = clf.run(debian_texts[:3], [tree, chain, {"software": ["games"]}], threshold=0.0)
    for outcome, result in zip(out.outcomes[:2], out.results[:2]):
        assert result is None and outcome.code == "invalid_labels" and "nested too deeply" in outcome.reason
    assert [x["label"] for x in out.results[2]] == ["software.games"]


@case(
    INPUTS,
    "CLI: a JSONL --labels-column of objects (a hierarchy per row) whose third row has a group the rows read "
    "for the schema lack, on the local, Spark and Beam runners",
    "local and Spark: exit 2, 'objects read as an Arrow struct' (Arrow would drop the group, silently); "
    "Beam: each row scored on its own groups",
)
def test_cli_jsonl_object_labels_are_read_whole_or_refused(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    pytest.importorskip("apache_beam")
    import pyarrow.parquet as pq

    from gliclass_pipelines.io import readers as inputs

    monkeypatch.setattr(inputs, "SCHEMA_ROWS", 2)  # the third row comes after the rows read for the schema
    trees = [
        {"software": ["games"]},
        {"software": ["libraries"]},
        {"software": ["games"], "topic": ["science"]},
    ]
    source = tmp_path / "rows.jsonl"
    rows = [{"id": str(i), "text": f"a package for task {i}", "tree": tree} for i, tree in enumerate(trees)]
    source.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")

    def run(runner: str, *extra: str) -> int:
        return cli.main([
            "classify", "--input", str(source), "--output", str(tmp_path / runner), "--text-column", "text",
            "--id-column", "id", "--labels-column", "tree", "--model", str(tiny_checkpoint),
            "--runner", runner, "--progress", "none", *extra,
        ])  # fmt: skip

    for runner in ("local", "spark"):
        capsys.readouterr()
        assert run(runner) == cli.EXIT_USAGE
        assert "objects read as an Arrow struct" in capsys.readouterr().err
    assert run("beam", "--threshold", "0") == 0
    got = {
        row["id"]: sorted(x["label"] for x in row["gliclass"])
        for row in pq.read_table(tmp_path / "beam").to_pylist()
    }
    assert got == {
        "0": ["software.games"],
        "1": ["software.libraries"],
        "2": ["software.games", "topic.science"],
    }
