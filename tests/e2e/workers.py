"""Real `tunedeck worker` processes for fault tests: start, wait, SIGKILL the whole group."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.fixtures import REPO, child_env


class WorkerProcess:
    """`python -m app.cli worker` in its own session, so a kill reaches its pool process too."""

    def __init__(self, env: dict[str, str], log_path: Path, name: str = "w1",
                 *extra_args: str):
        self.log_path = log_path
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()/kill()
        # One torch thread: the suite shares two cores with other processes.
        extra = {"OMP_NUM_THREADS": "1", **env}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker", "--hostname", f"{name}@%h",
             "--log-level", "info", *extra_args],
            cwd=REPO, env=child_env(extra), stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"the worker exited:\n{self.output()[-3000:]}")
            time.sleep(0.2)
        raise AssertionError(f"no {text!r} in the worker log after {timeout}s:\n"
                             f"{self.output()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the worker and its pool process at once: nothing runs any cleanup."""
        self._signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self.log.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.process.wait(timeout=30)
        self.log.close()

    def _signal(self, sig: signal.Signals) -> None:
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass
