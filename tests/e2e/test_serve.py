"""`tunedeck serve` owns its embedded worker: stopping or killing serve stops the worker too."""
from __future__ import annotations

import os
import signal
import time

import psutil
import pytest


def embedded_worker(server) -> psutil.Process:
    children = psutil.Process(server.process.pid).children()
    workers = [c for c in children if "worker" in c.cmdline()]
    assert len(workers) == 1, [c.cmdline() for c in children]
    return workers[0]


def wait_gone(process: psutil.Process, timeout: float) -> bool:
    try:
        process.wait(timeout)
        return True
    except psutil.TimeoutExpired:
        return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_worker_stops_with_serve(live_server, sig):
    worker = embedded_worker(live_server)
    time.sleep(3)  # let the worker finish starting
    os.kill(live_server.process.pid, sig)
    assert wait_gone(worker, 45), f"embedded worker outlived serve after {sig.name}"
