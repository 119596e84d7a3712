"""`tunedeck serve` owns its embedded workers (training and inference): stopping or killing
serve stops them too."""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time

import httpx
import psutil
import pytest


def embedded_workers(server) -> tuple[psutil.Process, psutil.Process]:
    """serve's two worker children: (training, inference)."""
    children = psutil.Process(server.process.pid).children()
    workers = [c for c in children if "worker" in c.cmdline()]
    training = [c for c in workers if "--inference" not in c.cmdline()]
    inference = [c for c in workers if "--inference" in c.cmdline()]
    assert len(training) == 1 and len(inference) == 1, [c.cmdline() for c in children]
    return training[0], inference[0]


def embedded_worker(server) -> psutil.Process:
    return embedded_workers(server)[0]


def wait_gone(process: psutil.Process, timeout: float) -> bool:
    try:
        process.wait(timeout)
        return True
    except psutil.TimeoutExpired:
        return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_worker_stops_with_serve(live_server, sig):
    workers = embedded_workers(live_server)
    time.sleep(3)  # let the workers finish starting
    os.kill(live_server.process.pid, sig)
    for worker in workers:
        assert wait_gone(worker, 45), f"{worker.cmdline()} outlived serve after {sig.name}"


def test_a_worker_whose_serve_died_while_it_started_stops(settings_env, tmp_path):
    """serve is gone before Celery has installed its signal handlers, where a SIGQUIT can be
    lost: the parent watch repeats it, then kills, so no worker is left behind."""
    from tests.fixtures import REPO, child_env

    log = tmp_path / "worker.log"
    worker_cmd = shlex.join([sys.executable, "-m", "app.cli", "worker", "--no-migrate"])
    script = f"{worker_cmd} --exit-with-parent $$ > {shlex.quote(str(log))} 2>&1 & echo $!"
    started = subprocess.run(  # the shell (the worker's parent) exits at once
        ["bash", "-c", script],
        cwd=REPO, env=child_env(settings_env), capture_output=True, text=True, timeout=30,
        check=True)
    worker = psutil.Process(int(started.stdout.split()[-1]))
    try:
        assert wait_gone(worker, 45), f"orphaned worker kept running:\n{log.read_text()}"
    finally:
        for process in [worker, *worker.children(recursive=True)] if worker.is_running() else []:
            process.kill()


def test_serve_runs_several_web_processes(settings_env, tmp_path):
    """TUNEDECK_WEB_WORKERS=2 (or --workers 2): two uvicorn processes answer on one port,
    beside one embedded training worker; SIGTERM to serve stops all of them."""
    from tests.fixtures import LiveServer

    server = LiveServer({**settings_env, "TUNEDECK_WEB_WORKERS": "2"}, tmp_path / "serve.log")
    try:
        worker, inference = embedded_workers(server)
        workers = {worker, inference, *worker.children(True), *inference.children(True)}
        tree = psutil.Process(server.process.pid).children(recursive=True)
        web = [p for p in tree if p not in workers
               and "multiprocessing" in " ".join(p.cmdline())]
        web = [p for p in web if "resource_tracker" not in " ".join(p.cmdline())]
        assert len(web) == 2, [p.cmdline() for p in tree]
        answered = {httpx.get(server.url + "/api/v1/jobs").status_code for _ in range(20)}
        assert answered == {200}
        time.sleep(3)  # let the worker finish starting
        os.kill(server.process.pid, signal.SIGTERM)
        for process in [worker, *web]:
            assert wait_gone(process, 45), f"{process.cmdline()} outlived serve"
    finally:
        server.stop()
