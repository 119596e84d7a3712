"""`python -m worker.rank JOB ATTEMPT`: one process of a job torchrun runs on several
processes (worker/distributed.py launches it; torchrun sets RANK, WORLD_SIZE, MASTER_ADDR).

Rank 0 trains with the database reporter and records the outcome as the single-process runner
does; the other ranks train with a reporter that drops everything. Each rank writes its exit
note (ranks/attempt-N/rank-R.json: ok, error with the traceback tail, or terminated) and its
pid (rank-R.pid) next to it.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from app.config import get_settings
from app.db import session_scope
from app.jobs import store
from worker import gpu
from worker.failures import describe_failure
from worker.reporting import DbReporter
from worker.runner import confined, source_for, store_outcome
from worker.training import train


class SilentReporter:
    """What ranks other than 0 report: nothing; rank 0 decides when to stop for them all."""

    cancel_requested = False
    lease_lost = False

    def progress(self, *args: Any) -> None: ...

    def metrics(self, *args: Any) -> None: ...

    def checkpoint(self, *args: Any) -> None: ...

    def notice(self, text: str) -> None: ...

    def job_fields(self, **fields: Any) -> None: ...

    def close(self) -> bool:
        return True


def write_note(notes: Path, rank: int, state: str, **fields: Any) -> None:
    path = notes / f"rank-{rank}.json"
    partial = path.with_suffix(".part")
    partial.write_text(json.dumps({"rank": rank, "state": state, "at": time.time(), **fields}))
    partial.replace(path)


def run_rank(rank: int, job_id: int, attempt: int, resume: str | None, devices: str) -> str:
    """Train this rank's share; rank 0 also reports and records the outcome."""
    settings = get_settings()
    job_dir = settings.job_dir(job_id).resolve()
    with session_scope() as session:
        spec = store.job_spec(session, job_id)
    reporter: DbReporter | SilentReporter = SilentReporter()
    if rank == 0:
        stats = gpu.GpuStats()
        reporter = DbReporter(job_id, session_scope, settings.data_dir, settings.flush_seconds,
                              stats=stats.snapshot, attempt=attempt,
                              lease_timeout=settings.lease_timeout_seconds).start()
    reporter.job_fields(devices=devices)
    try:
        spec = confined(spec, settings)
        with contextlib.chdir(job_dir):
            outcome = train(spec, source_for(spec), job_dir, reporter, resume_from=resume,
                            use_cpu=not torch.cuda.is_available())
    finally:
        reporter.close()
    if isinstance(reporter, SilentReporter):
        return "trained"
    return store_outcome(job_id, attempt, outcome, reporter)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.rank", description=__doc__)
    parser.add_argument("job_id", type=int)
    parser.add_argument("attempt", type=int)
    parser.add_argument("--notes", type=Path, required=True)
    parser.add_argument("--devices", default="")
    parser.add_argument("--resume", default=None)
    args = parser.parse_args(argv)
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank = dist.get_rank()
    (args.notes / f"rank-{rank}.pid").write_text(str(os.getpid()))

    def terminated(signum: int, frame: Any) -> None:  # torchrun stops the rest of the group
        write_note(args.notes, rank, "terminated", signal=signum)
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, terminated)
    try:
        status = run_rank(rank, args.job_id, args.attempt, args.resume, args.devices)
    except BaseException as exc:  # noqa: BLE001 - the note is how the launcher learns why
        kind, message, tail, hint = describe_failure(exc)
        write_note(args.notes, rank, "error", type=kind, message=message, traceback=tail,
                   hint=hint)
        return 1
    write_note(args.notes, rank, "ok", status=status)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
