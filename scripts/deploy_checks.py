"""Run the kits as practitioners deploy them (issue 24), on real local deployments, and print one PASS/FAIL
line per point with its time:

    .venv/bin/python scripts/deploy_checks.py [--only ray,spark,mlflow,beam]

- ray: `ray start --head --num-cpus 2`, then classify_dataset(read_json(...), concurrency=2) through it
  (2 actors on 2 CPUs hung forever before the default actor CPUs), and the refusal of num_cpus=1.
- spark: a standalone master and 2 workers (spark-class), spark/README's spark-submit command with
  `--taxonomy` a local path (point 2), and a missing model directory (point 4: exit 3 before any task).
- mlflow: `mlflow models serve` on 127.0.0.1 and each standard JSON payload posted to /invocations.
- beam: the CLI with PortableRunner and an unreachable --job_endpoint (point 4: a bounded, clear error).

Everything runs on loopback with a tiny random checkpoint (gliclass_pipelines.testing); every step has a
timeout, and every process started here runs in its own session, ended by its group id at the end. Not
part of pytest: it takes minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SAMPLE = ROOT / "examples" / "data" / "sample.jsonl"
LABELS = "games,science,audio,graphics,networking"
ENV = {
    **os.environ,
    "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # mlflow serve runs `uvicorn` by name
    "PYTHONPATH": str(ROOT),
    "HF_HUB_OFFLINE": "1",
    "SPARK_LOCAL_IP": "127.0.0.1",
    "PYSPARK_PYTHON": sys.executable,
    "PYSPARK_DRIVER_PYTHON": sys.executable,
    "TOKENIZERS_PARALLELISM": "false",
    "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
    "MLFLOW_ALLOW_FILE_STORE": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
}
RESULTS: list[tuple[str, bool, float, str]] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def started(cmd: list[str], log: Path):
    """A background process in its own session; its whole group is ended on exit."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=ENV, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 5)):
            try:
                os.killpg(proc.pid, sig)
                proc.wait(wait)
                break
            except (ProcessLookupError, subprocess.TimeoutExpired):
                continue


def run(cmd: list[str], timeout: float) -> tuple[int, str, float]:
    began = time.perf_counter()
    try:
        done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout)
        return done.returncode, done.stdout + done.stderr, time.perf_counter() - began
    except subprocess.TimeoutExpired as exc:
        return 124, f"timed out after {timeout:.0f}s: {exc.stderr!s:.2000}", time.perf_counter() - began


def wait_for(check, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(1)
    raise TimeoutError(f"{what} not ready within {timeout:.0f}s")


def record(point: str, ok: bool, seconds: float, detail: str) -> None:
    RESULTS.append((point, ok, seconds, detail))
    print(f"{'PASS' if ok else 'FAIL'} {point:34s} {seconds:6.1f}s  {detail}", flush=True)


RAY_JOB = """
import sys, ray
from gliclass_pipelines.errors import ConfigError
from gliclass_pipelines.ray_data import classify_dataset
ray.init(address=sys.argv[1], log_to_driver=False)
ds = ray.data.read_json(sys.argv[2])
try:
    classify_dataset(ds, "text", labels=sys.argv[4].split(","), model=sys.argv[3], concurrency=2, num_cpus=1)
    print("REFUSED no")
except ConfigError as exc:
    print("REFUSED yes:", exc)
labels = sys.argv[4].split(",")
rows = classify_dataset(ds, "text", labels=labels, model=sys.argv[3], concurrency=2).take_all()
print("ROWS", len(rows), sum(r["gliclass"] is not None for r in rows))
"""


def check_ray(work: Path, model: Path) -> None:
    port = free_port()
    head = [str(BIN / "ray"), "start", "--head", "--num-cpus", "2", "--port", str(port), "--block"]
    head += ["--include-dashboard", "false", "--disable-usage-stats"]
    with started(head, work / "ray.log"):
        began = time.perf_counter()
        wait_for(
            lambda: run([str(BIN / "ray"), "status", "--address", f"127.0.0.1:{port}"], 30)[0] == 0, 90, "ray"
        )
        code, out, secs = run(
            [sys.executable, "-c", RAY_JOB, f"127.0.0.1:{port}", str(SAMPLE), str(model), LABELS], 300
        )
        want = sum(1 for _ in SAMPLE.open())
        ok = code == 0 and f"ROWS {want} " in out and "REFUSED yes" in out
        tail = [
            line for line in out.splitlines() if line.startswith(("ROWS", "REFUSED"))
        ] or out.splitlines()[-3:]
        record(
            "1 ray concurrency=2 on 2 CPUs",
            ok,
            time.perf_counter() - began,
            f"rc={code} {' | '.join(tail)[:300]}",
        )


def check_spark(work: Path, model: Path) -> None:
    port, spark_class = free_port(), str(BIN / "spark-class")
    master = f"spark://127.0.0.1:{port}"
    master_cmd = [
        spark_class,
        "org.apache.spark.deploy.master.Master",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    master_cmd += ["--webui-port", str(free_port())]
    taxonomy = work / "taxonomy.yaml"
    taxonomy.write_text("labels: [" + LABELS + "]\n")
    with started(master_cmd, work / "master.log"):
        workers = [
            [spark_class, "org.apache.spark.deploy.worker.Worker", master, "--host", "127.0.0.1",
             "--cores", "1", "--memory", "1g", "--webui-port", str(free_port()),
             "--work-dir", str(work / f"w{i}")]
            for i in range(2)
        ]  # fmt: skip
        with started(workers[0], work / "worker0.log"), started(workers[1], work / "worker1.log"):
            log = work / "master.log"
            wait_for(
                lambda: log.read_text(errors="replace").count("Registering worker") >= 2, 120, "2 workers"
            )
            submit = [str(BIN / "spark-submit"), "--master", master, str(ROOT / "spark" / "classify_job.py")]
            submit += [
                "--input",
                str(SAMPLE),
                "--input-format",
                "json",
                "--text-col",
                "text",
                "--id-col",
                "id",
            ]
            readme = [
                *submit,
                "--taxonomy",
                str(taxonomy),
                "--model",
                str(model),
                "--output",
                str(work / "out"),
            ]
            code, out, secs = run(readme, 400)
            line = next((x for x in out.splitlines() if x.startswith("wrote ")), out.splitlines()[-1:])
            record(
                "2 spark-submit README command",
                code == 0 and "wrote 20 rows" in out,
                secs,
                f"rc={code} {line}",
            )
            missing = [*submit, "--taxonomy", str(taxonomy), "--model", str(work / "nowhere")]
            code, out, secs = run([*missing, "--output", str(work / "out2")], 120)
            lines = out.strip().splitlines()
            ok = code == 3 and "does not exist" in out and "SparkContext" not in out
            record(
                "4 spark kit missing model", ok, secs, f"rc={code} {len(lines)} line(s): {lines[-1][:120]}"
            )
            cli = [
                str(BIN / "gliclass-pipelines"),
                "classify",
                "--input",
                str(SAMPLE),
                "--output",
                str(work / "o3"),
            ]
            cli += ["--text-column", "text", "--labels", LABELS, "--model", str(work / "nowhere")]
            code, out, secs = run([*cli, "--runner", "spark", "--spark-master", master], 120)
            lines = out.strip().splitlines()
            record("4 CLI --runner spark missing model", code == 3, secs, f"rc={code} {len(lines)} line(s)")


PAYLOADS = {
    "inputs": {"inputs": ["a chess engine", "a DNS server", 3]},
    "instances": {"instances": ["a chess engine", "a DNS server"]},
    "inputs dict": {"inputs": {"text": ["a chess engine", 3]}},
    "dataframe_split": {"dataframe_split": {"columns": ["text"], "data": [["a chess engine"], [3]]}},
    "dataframe_records": {"dataframe_records": [{"text": "a chess engine"}, {"text": None}]},
    "wrong column": {"dataframe_records": [{"body": "a chess engine"}]},
}


def post(port: int, payload: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations",
        json.dumps(payload).encode(),
        {"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def served_ok(name: str, status: int, body: dict) -> bool:
    if name == "wrong column":
        return status == 400 and "text" in json.dumps(body)
    rows = body.get("predictions")
    if status != 200 or not isinstance(rows, list) or len(rows) != len(next(iter(PAYLOADS[name].values()))):
        return False
    numeric = [r for r in rows if isinstance(r, dict)]
    return all(isinstance(r, list | dict) or r is None for r in rows) and all("error" in r for r in numeric)


def check_mlflow(work: Path, model: Path) -> None:
    began = time.perf_counter()
    save = (
        "import sys; from gliclass_pipelines.mlflow_flavor import save_model; "
        "save_model(sys.argv[1], sys.argv[2], sys.argv[3].split(','))"
    )
    code, out, _ = run([sys.executable, "-c", save, str(work / "mlflow-model"), str(model), LABELS], 180)
    if code:
        record(
            "3 mlflow models serve", False, time.perf_counter() - began, f"save_model rc={code} {out[-300:]}"
        )
        return
    port = free_port()
    serve = [
        str(BIN / "mlflow"),
        "models",
        "serve",
        "-m",
        str(work / "mlflow-model"),
        "--env-manager",
        "local",
    ]
    with started([*serve, "-h", "127.0.0.1", "-p", str(port)], work / "mlflow.log"):

        def ping() -> bool:
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5).status == 200
            except OSError:
                return False

        wait_for(ping, 180, "mlflow server")
        answers = {name: post(port, payload) for name, payload in PAYLOADS.items()}
    bad = [f"{n}: {s} {json.dumps(b)[:160]}" for n, (s, b) in answers.items() if not served_ok(n, s, b)]
    first = json.dumps(answers["inputs"][1])[:200]
    record(
        "3 mlflow models serve", not bad, time.perf_counter() - began, "; ".join(bad) or f"inputs -> {first}"
    )


def check_beam(work: Path, model: Path) -> None:
    cli = [
        str(BIN / "gliclass-pipelines"),
        "classify",
        "--input",
        str(SAMPLE),
        "--output",
        str(work / "beam-out"),
    ]
    cli += ["--text-column", "text", "--labels", LABELS, "--model", str(model), "--runner", "beam"]
    cli += ["--beam-runner", "PortableRunner", "--beam-option", f"job_endpoint=127.0.0.1:{free_port()}"]
    code, out, secs = run(cli, 120)
    lines = out.strip().splitlines()
    ok = code == 1 and "did not answer within 30 s" in out
    record("4 beam unreachable job_endpoint", ok, secs, f"rc={code} {lines[-1][:160] if lines else ''}")


CHECKS = {"ray": check_ray, "spark": check_spark, "mlflow": check_mlflow, "beam": check_beam}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default=",".join(CHECKS), help="comma-separated: " + ",".join(CHECKS))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gliclass-deploy-") as tmp:
        work = Path(tmp)
        model = work / "tiny"
        code, out, _ = run([str(BIN / "gliclass-pipelines"), "make-test-model", str(model)], 180)
        if code:
            print(out)
            return 1
        for name in args.only.split(","):
            try:
                CHECKS[name](work, model)
            except Exception as exc:  # a step that could not even start is a failed point, not a crash
                record(name, False, 0.0, f"{type(exc).__name__}: {exc}")
    return 0 if RESULTS and all(ok for _, ok, _, _ in RESULTS) else 1


if __name__ == "__main__":
    sys.exit(main())
