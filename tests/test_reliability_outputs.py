"""Hostile situations around outputs and processes: unordered labels, foreign folders under skip-existing,
a signal between the renames of an overwrite, two runs that share a host name and pid numbers, output
names that are not UTF-8, fork after classify, and SIGTERM under the Spark runner.

Where a process boundary is what is tested, the test runs a real child process (tests/paused_cli.py
stops it at the exact point) and reads what is on disk afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from reliability_support import ATTACKS, FAULTS, case

from gliclass_pipelines import cli

pytest_plugins = ["reliability_support"]

HERE = Path(__file__).resolve().parent
CHILD_SECONDS = 240  # model load included, on a loaded 2-core machine


def snapshot(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def beside(output: Path) -> list[str]:
    return sorted(p.name for p in output.parent.iterdir() if p.name.startswith(output.name))


def classify(source: Path, output: Path, model: Path | str, mode: str = "overwrite", labels: str = "a,b"):
    return [
        "classify", "--input", str(source), "--output", str(output), "--labels", labels,
        "--model", str(model), "--mode", mode, "--progress", "none",
    ]  # fmt: skip


def labels_in(output: Path) -> set[str]:
    import pyarrow.parquet as pq

    return {x["label"] for row in pq.read_table(output).to_pylist() for x in row["gliclass"]}


class Paused:
    """A CLI child stopped at ``point`` (see paused_cli.py) until :meth:`go`."""

    def __init__(self, tmp_path: Path, point: str, args: list[str], fake_pid: int | None = None) -> None:
        self.ready, self.go_file = tmp_path / f"{point}.ready", tmp_path / f"{point}.go"
        extra = [] if fake_pid is None else [str(fake_pid)]
        command = [sys.executable, str(HERE / "paused_cli.py"), point, str(self.ready), str(self.go_file)]
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        self.process = subprocess.Popen(
            [*command, *extra, "--", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    def wait_until_there(self) -> None:
        deadline = time.monotonic() + CHILD_SECONDS
        while not self.ready.exists():
            if self.process.poll() is not None:
                pytest.fail(f"the child ended before the pause: {self.process.communicate()}")
            assert time.monotonic() < deadline, "the child never reached the pause"
            time.sleep(0.02)

    def go(self) -> tuple[int, str]:
        self.go_file.write_text("go\n")
        _, err = self.process.communicate(timeout=CHILD_SECONDS)
        return self.process.returncode, err

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate(timeout=60)


@pytest.fixture
def paused(tmp_path):
    started: list[Paused] = []

    def start(point: str, args: list[str], fake_pid: int | None = None) -> Paused:
        started.append(Paused(tmp_path, point, args, fake_pid))
        return started[-1]

    yield start
    for child in started:
        child.kill()


# ----------------------------------------------------------------------------------------------------
# 5. Labels in no fixed order


UNORDERED = {
    "set": lambda: {"games", "science", "networking", "editors", "fonts"},
    "frozenset": lambda: frozenset({"games", "science"}),
    "dict keys": lambda: {"games": 1, "science": 2}.keys(),
    "generator": lambda: (x for x in ["games", "science"]),
}


@case(
    ATTACKS,
    "per-row labels as a set, frozenset, dict view or generator through ClassifyConfig.classify (the Beam "
    "handler's path) and Classifier.run; shared labels given as each",
    "that row failed with 'has no order of its own' (its neighbours scored); shared: ConfigError at config",
)
def test_unordered_labels_are_refused(tiny_checkpoint, reliability):
    from gliclass_pipelines.core.config import ClassifyConfig
    from gliclass_pipelines.errors import ConfigError

    config = ClassifyConfig(model=str(tiny_checkpoint), per_row_labels=True, output="scores")
    for name, make in UNORDERED.items():
        records, out = config.classify(["a chess engine"] * 3, [["games"], make(), ("games", "science")])
        assert [o.kind for o in out.outcomes] == ["ok", "failed", "ok"], name
        assert "has no order of its own" in out.outcomes[1].reason and records[1] is None
        run = config.classifier().run(["a chess engine"], row_labels=[make()])
        assert run.outcomes[0].code == "invalid_labels" and "has no order" in run.outcomes[0].reason
        with pytest.raises(ConfigError, match="has no order of its own"):
            ClassifyConfig(model=str(tiny_checkpoint), labels=make())
        with pytest.raises(ConfigError, match="has no order of its own"):
            ClassifyConfig(model=str(tiny_checkpoint), labels={"group": make()})
    reliability.set(kinds=len(UNORDERED))


def test_a_set_cell_is_refused_whatever_the_hash_seed(tiny_checkpoint):
    """A set's order follows PYTHONHASHSEED: run the same cell under three seeds, all must refuse it."""
    code = (
        "import sys; from gliclass_pipelines.core.config import ClassifyConfig; "
        f"c = ClassifyConfig(model={str(tiny_checkpoint)!r}, per_row_labels=True, output='scores'); "
        "r, o = c.classify(['a chess engine'], [{'games', 'science', 'networking', 'editors', 'fonts'}]); "
        "print(o.outcomes[0].kind)"
    )
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "HF_HUB_OFFLINE": "1"}
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
        )
        assert done.stdout.split()[-1:] == ["failed"], done.stderr[-2000:]


# ----------------------------------------------------------------------------------------------------
# 6. skip-existing and a folder that is not ours


@case(
    ATTACKS,
    "--mode skip-existing on a Spark-written folder (_SUCCESS, a part file) holding a user's file, no marker",
    "exit 2 'not a gliclass-pipelines output', never 'complete; skipped'; every byte survives",
)
def test_skip_existing_needs_the_marker(source, tiny_checkpoint, tmp_path, capsys):
    folder = tmp_path / "spark-out"
    folder.mkdir()
    (folder / "_SUCCESS").write_bytes(b"")
    (folder / "part-00000-3f2a.snappy.parquet").write_bytes(b"PAR1 someone else's rows PAR1")
    (folder / "notes.txt").write_text("my notes\n")
    before = snapshot(folder)
    code = cli.main(classify(source, folder, tiny_checkpoint, "skip-existing"))
    out, err = capsys.readouterr()
    assert code == cli.EXIT_USAGE, out + err
    assert "skipped" not in out and "not a gliclass-pipelines output" in err
    assert snapshot(folder) == before
    (folder / "notes.txt").unlink()  # only Spark's files and no marker: still not ours
    assert cli.main(classify(source, folder, tiny_checkpoint, "skip-existing")) == cli.EXIT_USAGE


# ----------------------------------------------------------------------------------------------------
# 7. A signal between the two renames of an overwrite


@case(
    FAULTS,
    "--mode overwrite stopped between its two renames (previous output aside, new one not in): {how}",
    "{expected}",
)
@pytest.mark.parametrize(
    ("how", "expected"),
    [
        (
            "a real SIGTERM to the child",
            "exit 143 once both renames are done; the new output at OUT, said so",
        ),
        (
            "SIGKILL of the child, then a later run",
            "the later run restores the previous output at OUT, said so",
        ),
        ("the second rename fails (injected OSError)", "exit 1; the previous output back at OUT, said so"),
    ],
    ids=["sigterm", "sigkill", "failure"],
)
def test_overwrite_swap_window(  # noqa: PLR0913 - fixtures
    how, expected, source, tiny_checkpoint, tmp_path, paused, monkeypatch, capsys, caplog
):
    output = tmp_path / "out"
    assert cli.main(classify(source, output, tiny_checkpoint)) == 0
    previous = snapshot(output)
    args = classify(source, output, tiny_checkpoint, labels="alpha,beta") + ["--threshold", "0"]
    if how.startswith("the second rename"):
        real = os.rename

        def rename(src, dst, *a, **k):
            if ".tmp-" in os.fspath(src) and Path(dst) == output:
                raise OSError(28, "No space left on device (injected)")
            return real(src, dst, *a, **k)

        monkeypatch.setattr(os, "rename", rename)
        assert cli.main(args) == cli.EXIT_FAILED
        monkeypatch.undo()
        assert f"{output} is unchanged" in capsys.readouterr().err
        assert snapshot(output) == previous and beside(output) == ["out"]
        return
    child = paused("swap", args)
    child.wait_until_there()
    assert not output.exists()  # the window: the previous output is aside, the new one not yet in
    if how.startswith("a real SIGTERM"):
        child.process.send_signal(signal.SIGTERM)
        code, err = child.go()
        assert code == 143, err
        assert f"{output} holds this run's complete output" in err
        assert labels_in(output) == {"alpha", "beta"} and beside(output) == ["out"]
        return
    child.kill()
    assert not output.exists() and len(beside(output)) == 2  # OUT.old-*, OUT.tmp-*
    assert cli.main(classify(source, output, tiny_checkpoint, "skip-existing")) == 0
    assert "skipped" in capsys.readouterr().out and f"restored {output}" in caplog.text
    assert snapshot(output) == previous and beside(output) == ["out"]


# ----------------------------------------------------------------------------------------------------
# 19. Two runs that share a host name, in separate PID namespaces


def dead_pid() -> int:
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    return done.pid


@case(
    ATTACKS,
    "two runs on one --output, one host name, separate PID namespaces: the first (a real child, paused "
    "mid-job) records a pid that does not exist for the second, which runs --mode overwrite to the end",
    "the first run's live temporary survives (its lock is held); both exit 0; the last commit is at OUT",
)
def test_live_temporary_of_a_run_in_another_pid_namespace(source, tiny_checkpoint, tmp_path, paused, caplog):
    output = tmp_path / "out"
    first = paused("chunk", classify(source, output, tiny_checkpoint, labels="alpha,beta"), dead_pid())
    first.wait_until_there()
    (temp,) = output.parent.glob("out.tmp-*")
    assert cli.main(classify(source, output, tiny_checkpoint)) == 0
    assert temp.is_dir() and "left by a killed run" not in caplog.text
    code, err = first.go()
    assert code == 0, err
    assert labels_in(output) <= {"alpha", "beta"} and beside(output) == ["out"]


# ----------------------------------------------------------------------------------------------------
# 22. Output names that are not UTF-8


@case(
    ATTACKS,
    "--output named with a byte that is not UTF-8 (out\\xff), with the {runner} runner",
    "exit 2 'not UTF-8' before any model loads (the model path does not exist)",
)
@pytest.mark.parametrize("runner", ["local", "spark", "beam"])
def test_output_name_that_is_not_utf8(runner, source, tmp_path, capsys):
    output = tmp_path / os.fsdecode(b"out\xff")
    args = [*classify(source, output, tmp_path / "no-model", "error"), "--runner", runner]
    assert cli.main(args) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "not UTF-8" in err and "out\\xff" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


# ----------------------------------------------------------------------------------------------------
# 17. fork after classify

FORKED = """
import multiprocessing, signal, sys
from gliclass_pipelines.core.config import ClassifyConfig
config = ClassifyConfig(model=sys.argv[1], labels=["games", "science"], output="scores", num_threads=2)
texts = ["a chess engine with an opening book and many words " * 12] * 48
parent = config.classify(texts)[0]

def child(queue):
    signal.alarm(60)  # a hang fails the child instead of the suite
    queue.put(config.classify(texts)[0])

context = multiprocessing.get_context("fork")
queue = context.Queue()
process = context.Process(target=child, args=(queue,))
process.start()
got = queue.get(timeout=90)
process.join(30)
print("same" if got == parent else "different", process.exitcode)
"""


@case(
    FAULTS,
    "fork after classify (multiprocessing 'fork', as gunicorn --preload or Celery prefork do); the forked "
    "child classifies on a 2-thread config",
    "the child's scores equal the parent's, in seconds (before: the child hung in torch's OpenMP pool)",
)
def test_forked_child_classifies(tiny_checkpoint, reliability):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", FORKED, str(tiny_checkpoint)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.stdout.split() == ["same", "0"], done.stderr[-3000:]
    assert "runs torch on 1 thread" in done.stderr
    reliability.set(seconds=round(time.monotonic() - started, 1))


# ----------------------------------------------------------------------------------------------------
# 18. SIGTERM under the Spark runner


@case(
    FAULTS,
    "SIGTERM to `classify --runner spark` while Spark writes (a real child process and JVM)",
    "exit 143 within seconds, no Py4J traceback, no JVM or Python worker left, no output or temporary",
)
@pytest.mark.spark
def test_spark_runner_under_sigterm(tiny_checkpoint, tmp_path, reliability):
    import psutil

    source = tmp_path / "rows.jsonl"
    rows = (
        json.dumps({"id": i, "text": f"a library for parsing file format number {i}"}) for i in range(20_000)
    )
    source.write_text("\n".join(rows) + "\n", encoding="utf-8")
    output = tmp_path / "out"
    args = [
        *classify(source, output, tiny_checkpoint, "error"),
        "--runner",
        "spark",
        "--spark-master",
        "local[1]",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "SPARK_LOCAL_IP": "127.0.0.1"}
    child = subprocess.Popen(
        [sys.executable, "-m", "gliclass_pipelines.cli", *args], stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        deadline = time.monotonic() + CHILD_SECONDS
        while not list(tmp_path.glob("out.tmp-*/_temporary")):  # Spark's write job has started
            assert child.poll() is None, child.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the Spark job never started writing"
            time.sleep(0.1)
        family = psutil.Process(child.pid).children(recursive=True)
        sent = time.monotonic()
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=90)
        took = time.monotonic() - sent
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 143, err[-3000:]
    assert "Traceback" not in err and "Py4J" not in err and "terminated; no output was written" in err
    assert took < 30, took
    alive = [p.pid for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"left running: {alive}"
    assert not output.exists() and not list(tmp_path.glob("out.*"))
    reliability.set(exit_seconds=round(took, 1))


def test_a_held_lock_keeps_its_folder_and_delays_a_commit(tmp_path, monkeypatch):
    """flock locks belong to an open file, so one process can play both runs: the holder and the other."""
    from gliclass_pipelines.io import output as out
    from gliclass_pipelines.io.locks import Held, create_locked_marker, release, take_if_free

    target = tmp_path / "out"
    temp = out.temporary_path(target)
    temp.mkdir()
    held = create_locked_marker(temp)
    with pytest.raises(Held):
        take_if_free(temp)
    out.remove_stale_temporaries(target)
    assert temp.is_dir()
    monkeypatch.setattr(out, "LOCK_WAIT_SECONDS", 0.1)
    os.rename(temp, target)  # now a previous output whose marker a committing run holds
    with pytest.raises(out.OutputBusyError):
        out._lock_previous(target)
    release(held)
    release(out._lock_previous(target))
    temp = out.temporary_path(target)
    temp.mkdir()
    release(create_locked_marker(temp))  # its run is gone
    out.remove_stale_temporaries(target)
    assert not temp.exists() and target.is_dir()
