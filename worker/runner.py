"""Runs one job: claim the row, train through the recipe, store the outcome, release the lease.

No Celery import: worker/tasks.py calls run_job; tests can call it directly too.
"""
from __future__ import annotations

import contextlib
import json
import logging
import socket
from pathlib import Path

from sqlalchemy.orm import Session

from app import paths
from app.config import Settings, get_settings
from app.datasets.models import Dataset
from app.db import session_scope, utcnow
from app.jobs import lifecycle, store
from app.jobs.models import JobStatus, prediction_columns
from worker import allocation, checkpoints, distributed, gpu, inventory
from worker import data as D
from worker.callbacks import metric_values
from worker.failures import describe_failure, is_out_of_memory
from worker.reporting import DbReporter, checkpoint_row
from worker.training import Outcome, train

log = logging.getLogger(__name__)
LOST = "lost"  # run_job's answer when another attempt (or the sweep) holds the job now


def worker_name() -> str:
    return f"{socket.gethostname()}"


def claim(job_id: int, worker_id: str) -> int | None:
    """Atomically move a queued job to running; the attempt number, or None if not ours."""
    with session_scope() as session:
        return lifecycle.claim(session, job_id, worker_id, utcnow())


def confined(spec: dict, settings: Settings) -> dict:
    """The spec with its local paths absolute; OutsideLocalRoots when auth is on and one
    lies outside TUNEDECK_LOCAL_ROOTS (the same check as at submit, app/paths.py)."""
    with session_scope() as session:
        roots = paths.allowed_roots(session, settings)
    return paths.confine(spec, roots)


def source_for(spec: dict) -> D.Source:
    """How to load the spec's dataset; local paths must have been through confined()."""
    ds = spec["dataset"]
    if ds["source"] == "local":
        return D.local_source(Path(ds["path"]).expanduser())
    if ds["source"] == "upload":
        with session_scope() as session:
            row = session.get(Dataset, ds["path"])
            if row is None:
                raise D.DataError(f"uploaded dataset {ds['path']!r} no longer exists")
            path = Path(row.path)
            path = path if path.is_absolute() else get_settings().data_dir / path
            return D.upload_source(str(path.resolve()), row.format)
    return D.Source(ds["path"], ds.get("config"))


def checkpoint_step(path: Path) -> int:
    return int(path.name.rsplit("-", 1)[-1])


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The newest complete checkpoint-N directory.

    Trainer writes trainer_state.json last, so a checkpoint whose state file is missing or cut
    short (the worker was killed while saving) is skipped for the one before it.
    """
    if not output_dir.is_dir():
        return None
    found = [p for p in output_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    for path in sorted(found, key=checkpoint_step, reverse=True):
        if _readable_state(path / "trainer_state.json"):
            return path
    return None


def _readable_state(path: Path) -> bool:
    try:
        return isinstance(json.loads(path.read_text(encoding="utf-8")), dict)
    except (OSError, ValueError):
        return False


def run_job(job_id: int, worker_id: str | None = None, settings: Settings | None = None) -> str:
    """Run job `job_id` if it is still queued; returns the final status (or 'skipped')."""
    settings = settings or get_settings()
    worker_id = worker_id or worker_name()
    gpus = inventory.discover(settings)
    assigned: tuple[int, ...] | None = None
    if shares_a_box(gpus, settings):  # wait for the scheduler's GPUs, then claim
        got = allocation.acquire(job_id, worker_id, settings, gpus)
        attempt, assigned = got if got is not None else (None, None)
    else:
        attempt = claim(job_id, worker_id)
    if attempt is None:
        log.info("job %s is not queued (already taken, finished or cancelled); skipping", job_id)
        return "skipped"
    while True:  # a CUDA out-of-memory retries in this process with half the batch
        status, next_attempt = _run_attempt(job_id, attempt, settings, gpus, assigned)
        if next_attempt is None:
            return status
        attempt = next_attempt


def shares_a_box(gpus: list[inventory.Gpu], settings: Settings) -> bool:
    """Jobs of this worker are scheduled onto its GPUs (worker/allocation.py) when it has
    several, or shares one; a one-GPU or CPU worker runs one job at a time, as it always did."""
    return len(gpus) > 1 or (bool(gpus) and settings.gpu_sharing)


def _run_attempt(job_id: int, attempt: int, settings: Settings, gpus: list[inventory.Gpu],
                 assigned: tuple[int, ...] | None) -> tuple[str, int | None]:
    """One attempt: its status, and the next attempt's number when it retries after an OOM."""
    job_dir = settings.job_dir(job_id).resolve()  # absolute: training runs inside it
    resume = latest_checkpoint(job_dir / "output")
    spec = _begin_attempt(job_id, attempt, resume, settings.data_dir)
    try:
        placement = distributed.place(spec.get("resources") or {}, gpus, settings.ddp_cpu,
                                      list(assigned) if assigned is not None else None)
    except distributed.PlacementError as exc:
        with session_scope() as session:
            lifecycle.fail(session, job_id, attempt, utcnow(), "PlacementError", str(exc),
                           None, None)
        return JobStatus.failed, None
    if placement.launched:
        return _run_launched(job_id, attempt, resume, placement, settings)
    return _run_in_process(job_id, attempt, resume, spec, placement, settings)


def _run_launched(job_id: int, attempt: int, resume: Path | None,
                  placement: distributed.Placement, settings: Settings) -> tuple[str, int | None]:
    """The attempt on torchrun's processes (worker/distributed.py); rank 0 reports."""
    launch = distributed.launch(job_id, attempt, resume, placement, settings)
    status, retry = distributed.settle(
        job_id, attempt, launch, settings,
        lambda kind, message: _retry_after_oom(job_id, attempt, kind, message, settings))
    # Requeued after a dead rank: the next attempt, maybe on another box, owns the output now.
    settled = LOST if status == JobStatus.queued else status
    _settle_checkpoints(job_id, settings.job_dir(job_id).resolve() / "output",
                        settings.data_dir, settled)
    return status, retry


def _run_in_process(job_id: int, attempt: int, resume: Path | None, spec: dict,
                    placement: distributed.Placement,
                    settings: Settings) -> tuple[str, int | None]:
    """The attempt in this process (one GPU of a one-GPU worker, or the CPU)."""
    job_dir = settings.job_dir(job_id).resolve()
    stats = gpu.GpuStats()
    reporter = DbReporter(job_id, session_scope, settings.data_dir, settings.flush_seconds,
                          stats=stats.snapshot, attempt=attempt,
                          lease_timeout=settings.lease_timeout_seconds).start()
    reporter.job_fields(devices=placement.label if placement.gpus or placement.cpu_only
                        else gpu.device_type())
    retry: int | None = None
    try:
        spec = confined(spec, settings)  # before anything is opened
        source = source_for(spec)
        job_dir.mkdir(parents=True, exist_ok=True)
        # The job dir as cwd: nothing planted in the worker's own cwd (./accuracy/accuracy.py
        # for evaluate.load, a ./glue folder for load_dataset) is picked up by a job.
        with contextlib.chdir(job_dir):
            outcome = train(spec, source, job_dir, reporter,
                            resume_from=str(resume) if resume else None,
                            use_cpu=placement.cpu_only)
    except BaseException as exc:  # every failure is recorded on the job
        reporter.close()
        kind, message, _, _ = describe_failure(exc)
        if isinstance(exc, Exception) and not reporter.lease_lost:
            retry = _retry_after_oom(job_id, attempt, kind, message, settings)
        if retry is None:
            status = _fail(job_id, attempt, exc, reporter)
            _settle_checkpoints(job_id, job_dir / "output", settings.data_dir, status)
            gpu.release()
            if not isinstance(exc, Exception):
                raise
            return status, None
    if retry is not None:
        # Outside the except block: the traceback (and the model it holds) is gone by now.
        _settle_checkpoints(job_id, job_dir / "output", settings.data_dir, JobStatus.running)
        gpu.release()
        return JobStatus.running, retry
    reporter.close()
    status = store_outcome(job_id, attempt, outcome, reporter)
    _settle_checkpoints(job_id, job_dir / "output", settings.data_dir, status)
    gpu.release()
    return status, None


def smaller_batch(training: dict) -> tuple[int, int, int, int] | None:
    """(batch, accumulation, halved batch, doubled accumulation); None at batch size 1."""
    batch = int(training.get("per_device_train_batch_size", 8))
    accumulation = int(training.get("gradient_accumulation_steps", 1))
    if batch <= 1:
        return None
    return batch, accumulation, batch // 2, accumulation * 2


def _retry_after_oom(job_id: int, attempt: int, kind: str, message: str,
                     settings: Settings) -> int | None:
    """After a CUDA out-of-memory (an error `kind: message`): the next attempt's number, with
    half the batch and twice the accumulation stored in the job's spec; None when this failure
    is not one to retry."""
    if not (is_out_of_memory(kind, message) and settings.oom_retry):
        return None
    with session_scope() as session:
        spec = dict(store.job_spec(session, job_id))
        training = dict(spec.get("training") or {})
        change = smaller_batch(training) if spec.get("on_oom", "retry") == "retry" else None
        if change is None:
            return None
        batch, accumulation, new_batch, new_accumulation = change
        training.update(per_device_train_batch_size=new_batch,
                        gradient_accumulation_steps=new_accumulation)
        note = (f"batch {batch} -> {new_batch}, accumulation {accumulation} -> "
                f"{new_accumulation} after CUDA OOM")
        retry = lifecycle.retry_after_oom(session, job_id, attempt, utcnow(),
                                          {**spec, "training": training},
                                          f"{kind}: {message}", note)
    if retry is not None:
        log.warning("job %s: attempt %s ran out of GPU memory; attempt %s: %s", job_id,
                    attempt, retry, note)
    return retry


def _begin_attempt(job_id: int, attempt: int, resume: Path | None, data_dir: Path) -> dict:
    """The job's spec. A restarted job's curve becomes exactly its checkpoint's history: what
    the lost attempt logged after the checkpoint goes, what it had not flushed yet comes back
    from the checkpoint's trainer_state.json. This run then continues it."""
    with session_scope() as session:
        if resume is not None:
            lifecycle.note_resume(session, job_id, attempt, resume.name)
            _restore_history(session, job_id, resume, data_dir)
            checkpoints.reconcile(session, job_id, resume.parent, data_dir)
        if attempt > 1:
            step = checkpoint_step(resume) if resume is not None else 0
            store.delete_metric_points_after(session, job_id, step)
            lifecycle.report(session, job_id, attempt, {"global_step": step})
        return store.job_spec(session, job_id)


def _restore_history(session: Session, job_id: int, checkpoint: Path, data_dir: Path) -> None:
    """Upsert the checkpoint's logged points from the first step the database may lack, and
    the checkpoint's row: a worker killed between saving and its next flush left them out."""
    step = checkpoint_step(checkpoint)
    state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    history = [e for e in state.get("log_history", []) if e.get("step", step + 1) <= step]
    have = store.last_metric_step(session, job_id, up_to=step)
    rows = [{"job_id": job_id, "name": name, "step": entry["step"], "value": value,
             "epoch": entry.get("epoch")}
            for entry in history if entry["step"] >= have
            for name, value in metric_values(entry).items()]
    if rows:
        store.upsert_metric_points(session, rows)
    evals = {name: value for entry in history if entry["step"] == step
             for name, value in metric_values(entry).items() if name.startswith("eval/")}
    store.upsert_checkpoint(
        session, checkpoint_row(job_id, checkpoint.name, step, checkpoint, data_dir, evals))


def _settle_checkpoints(job_id: int, output_dir: Path, data_dir: Path, status: str) -> None:
    """After the attempt's end: drop a half-written checkpoint, then make the rows match the
    disk (saves the reporter could not record while the database was away). Not once the
    attempt lost the job: the attempt that holds it may be saving right now."""
    if status == LOST:
        return
    try:
        checkpoints.discard_incomplete(output_dir)
        with session_scope() as session:
            checkpoints.reconcile(session, job_id, output_dir, data_dir)
    except Exception:  # the outcome is stored already; the next attempt or a restart retries
        log.exception("job %s: could not reconcile checkpoints with %s", job_id, output_dir)


def _lost(job_id: int, attempt: int) -> str:
    """The final write matched nothing: the sweep handed the job on (or it is gone)."""
    log.warning("job %s: attempt %s lost its lease; the sweep hands the job on", job_id, attempt)
    return LOST


def store_outcome(job_id: int, attempt: int, outcome: Outcome, reporter: DbReporter) -> str:
    """Succeeded (or cancelled, when it stopped for a cancel), with predictions and the final
    checkpoint, if this attempt still holds the job: only it may end the job."""
    status = JobStatus.cancelled if outcome.cancelled else JobStatus.succeeded
    final = outcome.final_metrics if outcome.final_dir is not None else None
    with session_scope() as session:
        if reporter.lease_lost or not _end(session, job_id, attempt, outcome, final):
            return _lost(job_id, attempt)
        if outcome.final_dir is not None:
            store.replace_predictions(session, job_id, [
                prediction_columns(job_id, outcome.task, row) for row in outcome.predictions])
            evals = {k: v for k, v in outcome.final_metrics.items() if k.startswith("eval/")}
            for directory in outcome.final_dirs:  # `final`, and `final-merged` for LoRA
                store.upsert_checkpoint(session, checkpoint_row(
                    job_id, directory.name, outcome.final_step or outcome.global_step,
                    directory, reporter.data_dir, evals))
    log.info("job %s %s at step %s", job_id, status, outcome.global_step)
    return status


def _end(session: Session, job_id: int, attempt: int, outcome: Outcome,
         final: dict[str, float] | None) -> bool:
    """lifecycle.cancel_ack, or lifecycle.finish with where early stopping stopped."""
    if outcome.cancelled:
        return lifecycle.cancel_ack(session, job_id, attempt, utcnow(), outcome.global_step,
                                    final)
    return lifecycle.finish(session, job_id, attempt, utcnow(), outcome.global_step, final,
                            stopped_early=outcome.stopped_early)


def _fail(job_id: int, attempt: int, exc: BaseException, reporter: DbReporter) -> str:
    kind, message, tail, hint = describe_failure(exc)
    log.error("job %s failed: %s: %s", job_id, kind, message)
    with session_scope() as session:
        if reporter.lease_lost or not lifecycle.fail(session, job_id, attempt, utcnow(), kind,
                                                     message, tail, hint):
            return _lost(job_id, attempt)
    return JobStatus.failed
