"""Which queued job runs on which GPUs: a pure function of the queue and the boxes' GPUs.

Rules (tests/worker/test_scheduler.py, fake inventories and a generated stream of jobs):
- A job asking for N GPUs gets N GPUs of one box that no job holds; a DDP job (N > 1) and a
  job without `gpu_memory_gb` hold their GPUs whole.
- With sharing on (TUNEDECK_GPU_SHARING), a one-GPU job that says its `gpu_memory_gb` goes on
  a GPU whose unclaimed memory fits it, next to other sharing jobs: the fullest such GPU
  (best fit), so small jobs pack together and whole GPUs stay free for big ones.
- `gpus: 0` jobs take a CPU slot of a box, never a GPU.
- Order: priority (higher first), then FIFO (queue order) within a priority.
- No starvation (reservation, as in EASY backfilling, without run-time estimates): the first
  job in that order that does not fit gets a reservation: the box with the most free GPUs
  among those with enough of them, and there the free GPUs plus the least-loaded busy ones.
  No later job may start on a reserved GPU; later jobs only backfill GPUs the head job cannot
  use. Reserved GPUs only drain, so the head job starts once the jobs already on them end.
  A reservation recomputed on the next pass moves only to a box with strictly more free
  GPUs, at most N - 1 times, so the head job's wait is bounded by the longest job running
  on its last reserved GPUs.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Request:
    job_id: int
    gpus: int = 1                       # 0: the CPU
    memory_gb: float | None = None      # per GPU; None: the GPU whole
    priority: int = 0


@dataclass
class GpuState:
    index: int
    memory_gb: float
    jobs: list[int] = field(default_factory=list)
    claimed_gb: float = 0.0             # what sharing jobs on it said they need
    whole: bool = False                 # held whole by one job

    @property
    def free(self) -> bool:
        return not self.jobs

    def room(self) -> float:
        return 0.0 if self.whole else self.memory_gb - self.claimed_gb


@dataclass
class Box:
    worker_id: str
    gpus: list[GpuState]
    cpu_slots: int = 1


@dataclass(frozen=True)
class Assignment:
    job_id: int
    worker_id: str
    gpus: tuple[int, ...]               # empty: a CPU job


@dataclass
class Plan:
    assignments: list[Assignment]
    reserved_for: int | None = None     # the head job that waits, if any
    reserved: tuple[str, tuple[int, ...]] | None = None


def order(queue: list[Request]) -> list[Request]:
    """Priority first, FIFO (the queue's order) within one priority."""
    return sorted(queue, key=lambda r: -r.priority)  # sorted() is stable: FIFO kept


def shares(request: Request, sharing: bool) -> bool:
    return sharing and request.gpus == 1 and request.memory_gb is not None


def fit(request: Request, box: Box, sharing: bool,
        blocked: frozenset[tuple[str, int]]) -> tuple[int, ...] | None:
    """The GPUs of `box` the request would take now, or None."""
    usable = [g for g in box.gpus if (box.worker_id, g.index) not in blocked]
    if shares(request, sharing):
        fits = [g for g in usable if g.room() >= (request.memory_gb or 0)]
        if not fits:
            return None
        best = min(fits, key=lambda g: (g.room(), g.index))  # the fullest that fits
        return (best.index,)
    free = [g.index for g in usable if g.free]
    return tuple(free[:request.gpus]) if len(free) >= request.gpus else None


def take(request: Request, box: Box, indices: tuple[int, ...], sharing: bool) -> None:
    for gpu in box.gpus:
        if gpu.index in indices:
            gpu.jobs.append(request.job_id)
            if shares(request, sharing):
                gpu.claimed_gb += request.memory_gb or 0
            else:
                gpu.whole = True


def reserve(request: Request, boxes: list[Box]) -> tuple[str, tuple[int, ...]] | None:
    """GPUs for the waiting head job: on the box with the most free GPUs (among those with
    enough GPUs at all), its free GPUs, then its busy ones with the fewest jobs."""
    count = max(1, request.gpus)
    candidates = [b for b in boxes if len(b.gpus) >= count]
    if not candidates:
        return None
    box = max(candidates, key=lambda b: (sum(g.free for g in b.gpus), -boxes.index(b)))
    ranked = sorted(box.gpus, key=lambda g: (not g.free, len(g.jobs), -g.room(), g.index))
    return box.worker_id, tuple(sorted(g.index for g in ranked[:count]))


def schedule(queue: list[Request], boxes: list[Box], sharing: bool = False,
             reservations: bool = True) -> Plan:
    """Assignments for the jobs that can start now; `boxes` is updated to include them."""
    plan = Plan([])
    blocked: frozenset[tuple[str, int]] = frozenset()
    for request in order(queue):
        placed = _place(request, boxes, sharing, blocked)
        if placed is not None:
            plan.assignments.append(placed)
        elif reservations and plan.reserved is None and request.gpus > 0:
            plan.reserved_for, plan.reserved = request.job_id, reserve(request, boxes)
            if plan.reserved is not None:
                worker, indices = plan.reserved
                blocked = frozenset((worker, i) for i in indices)
    return plan


def _place(request: Request, boxes: list[Box], sharing: bool,
           blocked: frozenset[tuple[str, int]]) -> Assignment | None:
    for box in boxes:
        if request.gpus == 0:
            if box.cpu_slots > 0:
                box.cpu_slots -= 1
                return Assignment(request.job_id, box.worker_id, ())
            continue
        indices = fit(request, box, sharing, blocked)
        if indices is not None:
            take(request, box, indices, sharing)
            return Assignment(request.job_id, box.worker_id, indices)
    return None

