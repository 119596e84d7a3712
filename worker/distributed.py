"""One job on several processes: torchrun, one process per GPU (DDP), from the job's process.

worker/runner.py claims the job and starts the attempt as for any job; for a job that asks for
more than one GPU (or for one GPU of a box with several) it calls `run_launched`, which starts
`python -m torch.distributed.run --standalone --nproc_per_node N -m worker.rank ...` with
CUDA_VISIBLE_DEVICES set to the job's GPUs and waits. With TUNEDECK_DDP_CPU on a worker without
GPUs a job asking for N GPUs runs as N CPU processes on gloo, through the same launch.

Rank 0 reports (progress, metrics, checkpoints, the lease, the cancel flag) and records the
outcome (succeeded or cancelled, predictions, `final`); the other ranks train and report
nothing (worker/rank.py). Every rank leaves an exit note; from those this module settles what
rank 0 could not record (`settle`):
- a rank raised (its own error, not a broken collective): the job fails with the earliest such
  error, or retries after a CUDA out-of-memory as in one process;
- a rank left no note (SIGKILL, the OOM killer, a segfault), or only collectives broke: the
  attempt ends lost at once and the job goes the lease sweep's way (worker/sweep.py
  after_loss): requeued to resume from its last checkpoint, failed once TUNEDECK_MAX_RESTARTS
  are used up, cancelled when a cancel was pending.
Cancel: rank 0 reads the flag; at each step end every rank takes the group's maximum of it
(worker/callbacks.py any_rank), so all ranks stop at the same step.
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from app.config import Settings
from app.db import session_scope, utcnow
from app.jobs import lifecycle
from app.jobs.models import Job, JobStatus
from app.jobs.queue import enqueue_after_commit
from worker.inventory import Gpu
from worker.sweep import after_loss

log = logging.getLogger(__name__)
LOST = "lost"
# Messages of a collective that broke because another rank went away: not a cause of their own.
BROKEN_COLLECTIVE = ("Connection closed by peer", "Connection reset by peer", "Broken pipe",
                     "NCCL", "gloo", "ProcessGroup", "Socket Timeout")


class PlacementError(ValueError):
    """The job asks for more than this worker has."""


@dataclass(frozen=True)
class Placement:
    processes: int
    gpus: tuple[Gpu, ...] = ()      # empty: the CPU
    launched: bool = False          # through torchrun; else in the job's own process
    cpu_only: bool = False          # `gpus: 0`: keep off the GPU even where there is one

    @property
    def label(self) -> str:
        """How the job page names it: cuda:0,1 / cpu / cpu x2."""
        if self.gpus:
            return "cuda:" + ",".join(str(g.index) for g in self.gpus)
        return "cpu" if self.processes == 1 else f"cpu x{self.processes}"


def place(resources: dict[str, Any], gpus: list[Gpu], ddp_cpu: bool,
          assigned: list[int] | None = None) -> Placement:
    """Where a job with `resources` trains on a worker with `gpus` (`assigned`: the
    scheduler's choice of indices; else the first ones)."""
    wanted = resources.get("gpus")
    if wanted == 0 or (wanted is None and not gpus):
        return Placement(1, cpu_only=wanted == 0)
    count = wanted or 1
    if not gpus:
        if ddp_cpu:
            return Placement(count, launched=count > 1)
        raise PlacementError(f"resources.gpus is {count}, and this worker has no GPU (set "
                             "resources.gpus: 0 to train on the CPU)")
    if count > len(gpus):
        raise PlacementError(f"resources.gpus is {count}, and this worker has {len(gpus)} "
                             "GPU(s)")
    chosen = [g for g in gpus if g.index in set(assigned)] if assigned else gpus[:count]
    # One GPU of several: its own process, so CUDA_VISIBLE_DEVICES pins it. The only GPU of
    # the worker (the one-worker-per-GPU layout): in the job's process, as before.
    return Placement(count, tuple(chosen[:count]), launched=count > 1 or len(gpus) > 1)


# ---------------------------------------------------------------- the launch

@dataclass
class Launch:
    """What the ranks left behind: their exit notes by rank, and torchrun's exit code."""

    processes: int
    returncode: int
    notes: dict[int, dict[str, Any]] = field(default_factory=dict)

    @property
    def errors(self) -> list[dict[str, Any]]:
        """Errors of the ranks' own making, earliest first (broken collectives left out)."""
        found = [n for n in self.notes.values() if n.get("state") == "error"
                 and not any(m in f"{n['type']}: {n['message']}" for m in BROKEN_COLLECTIVE)]
        return sorted(found, key=lambda n: n["at"])

    @property
    def rank_died(self) -> bool:
        """A rank ended without a word (killed), or every error was a broken collective."""
        silent = len(self.notes) < self.processes
        broken = any(n.get("state") == "error" for n in self.notes.values())
        return silent or (broken and not self.errors)


def notes_dir(settings: Settings, job_id: int, attempt: int) -> Path:
    return settings.job_dir(job_id).resolve() / "ranks" / f"attempt-{attempt}"


def command(job_id: int, attempt: int, resume: Path | None, placement: Placement,
            notes: Path) -> list[str]:
    """torchrun through `env`, which adds the job's CUDA_VISIBLE_DEVICES to the worker's
    environment (a CPU job sees no GPU)."""
    devices = ",".join(g.device for g in placement.gpus)
    rank_args = [str(job_id), str(attempt), "--notes", str(notes), "--devices", placement.label]
    if resume is not None:
        rank_args += ["--resume", str(resume)]
    return ["env", f"CUDA_VISIBLE_DEVICES={devices}", sys.executable, "-m",
            "torch.distributed.run", "--standalone", f"--nproc_per_node={placement.processes}",
            "--max_restarts=0", "-m", "worker.rank", *rank_args]


def _die_with_parent() -> None:
    """torchrun (and so its ranks) gets SIGTERM when the job's process dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def launch(job_id: int, attempt: int, resume: Path | None, placement: Placement,
           settings: Settings) -> Launch:
    """Run the attempt's ranks to their end, renewing the lease while they start."""
    notes = notes_dir(settings, job_id, attempt)
    shutil.rmtree(notes, ignore_errors=True)
    notes.mkdir(parents=True)
    log.info("job %s: launching %d processes on %s", job_id, placement.processes,
             placement.label)
    process = subprocess.Popen(command(job_id, attempt, resume, placement, notes),
                               cwd=notes.parent.parent, preexec_fn=_die_with_parent)
    renewed = time.monotonic()
    while process.poll() is None:
        time.sleep(0.5)
        if time.monotonic() - renewed >= settings.heartbeat_seconds:
            with session_scope() as session:  # rank 0 renews it too once it reports
                lifecycle.heartbeat(session, job_id, attempt, utcnow())
            renewed = time.monotonic()
    return Launch(placement.processes, process.returncode, read_notes(notes))


def read_notes(notes: Path) -> dict[int, dict[str, Any]]:
    found = {}
    for path in notes.glob("rank-*.json"):
        with contextlib.suppress(OSError, ValueError):
            found[int(path.stem.split("-")[1])] = json.loads(path.read_text(encoding="utf-8"))
    return found


# ---------------------------------------------------------------- the outcome

RetryAfterOom = Callable[[str, str], int | None]


def settle(job_id: int, attempt: int, launch_: Launch, settings: Settings,
           retry_after_oom: RetryAfterOom) -> tuple[str, int | None]:
    """The attempt's status once its ranks are gone, recording what rank 0 did not; and the
    next attempt's number when it retries after an out-of-memory."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None or job.status != JobStatus.running or job.attempts != attempt:
            return (job.status if job is not None and job.attempts == attempt else LOST), None
    errors = launch_.errors
    if errors:
        first = errors[0]
        retry = retry_after_oom(first["type"], first["message"])
        if retry is not None:
            return JobStatus.running, retry
        return _fail(job_id, attempt, first), None
    return _lose(job_id, attempt, launch_, settings), None


def _fail(job_id: int, attempt: int, note: dict[str, Any]) -> str:
    message = f"rank {note['rank']}: {note['message']}"
    with session_scope() as session:
        done = lifecycle.fail(session, job_id, attempt, utcnow(), note["type"], message,
                              note.get("traceback"), note.get("hint"))
    return JobStatus.failed if done else LOST


def _lose(job_id: int, attempt: int, launch_: Launch, settings: Settings) -> str:
    """A rank died: end the attempt as the sweep ends a lost one, without waiting for the
    lease to run out."""
    silent = sorted(set(range(launch_.processes)) - set(launch_.notes))
    message = (f"rank(s) {silent} of {launch_.processes} died without an error (torchrun "
               f"exit code {launch_.returncode})" if silent else
               f"a collective of the {launch_.processes} processes broke")
    now = utcnow()
    with session_scope() as session:
        job = session.get(Job, job_id)
        outcome = None if job is None else after_loss(
            session, job, settings, now, now + timedelta(seconds=1), message)
        if job is not None and outcome == "requeued":
            enqueue_after_commit(session, job)
    log.warning("job %s attempt %s: %s; %s", job_id, attempt, message, outcome)
    return {"requeued": JobStatus.queued, "failed": JobStatus.failed,
            "cancelled": JobStatus.cancelled}.get(outcome or "", LOST)
