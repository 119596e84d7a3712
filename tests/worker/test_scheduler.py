"""worker/scheduler.py on fake GPU inventories: placement, sharing by memory, order, and a
generated stream of jobs in which a big job is not starved by small ones."""
from __future__ import annotations

import random

import pytest

from worker.scheduler import Box, GpuState, Request, schedule


def box(name: str, count: int, memory_gb: float = 80.0, busy: dict[int, int] | None = None,
        cpu_slots: int = 1) -> Box:
    """A box of `count` GPUs; `busy` maps a GPU index to the job holding it whole."""
    gpus = [GpuState(i, memory_gb) for i in range(count)]
    for index, job in (busy or {}).items():
        gpus[index].jobs.append(job)
        gpus[index].whole = True
    return Box(name, gpus, cpu_slots)


def started(plan) -> dict[int, tuple[str, tuple[int, ...]]]:
    return {a.job_id: (a.worker_id, a.gpus) for a in plan.assignments}


def test_an_n_gpu_job_waits_for_n_free_gpus_on_one_box():
    boxes = [box("a", 2, busy={0: 90}), box("b", 2, busy={1: 91})]  # 2 free, on two boxes
    assert started(schedule([Request(1, gpus=2)], boxes)) == {}
    boxes = [box("a", 2, busy={0: 90}), box("b", 2)]
    assert started(schedule([Request(1, gpus=2)], boxes)) == {1: ("b", (0, 1))}


def test_sharing_puts_small_jobs_together_while_their_memory_fits():
    boxes = [box("a", 1, memory_gb=80)]
    queue = [Request(i, memory_gb=30) for i in (1, 2, 3)]
    assert started(schedule(queue, boxes, sharing=True)) == {1: ("a", (0,)), 2: ("a", (0,))}
    assert boxes[0].gpus[0].claimed_gb == 60  # the third (30 GB more) does not fit in 80
    later = schedule([Request(3, memory_gb=30), Request(4, memory_gb=20)], boxes,
                     sharing=True, reservations=False)
    assert started(later) == {4: ("a", (0,))}  # 20 GB still fit


def test_without_sharing_or_a_memory_figure_a_job_holds_its_gpu_whole():
    queue = [Request(1, memory_gb=10), Request(2, memory_gb=10)]
    assert started(schedule(queue, [box("a", 1)], sharing=False)) == {1: ("a", (0,))}
    shared = [box("a", 1)]
    schedule([Request(1, memory_gb=10)], shared, sharing=True)
    assert started(schedule([Request(2)], shared, sharing=True)) == {}  # no memory: whole


def test_sharing_fills_the_fullest_gpu_that_fits_first():
    boxes = [box("a", 2, memory_gb=40)]
    schedule([Request(1, memory_gb=30)], boxes, sharing=True)  # GPU 0 has 10 GB left
    plan = schedule([Request(2, memory_gb=10), Request(3, memory_gb=35)], boxes, sharing=True)
    assert started(plan) == {2: ("a", (0,)), 3: ("a", (1,))}


def test_priority_first_then_fifo():
    queue = [Request(1), Request(2, priority=5), Request(3), Request(4, priority=5)]
    plan = schedule(queue, [box("a", 2)])
    assert [a.job_id for a in plan.assignments] == [2, 4]
    assert plan.reserved_for == 1  # the first in order that waits


def test_cpu_jobs_take_cpu_slots_not_gpus():
    plan = schedule([Request(1, gpus=0), Request(2, gpus=0), Request(3)], [box("a", 1)])
    assert started(plan) == {1: ("a", ()), 3: ("a", (0,))}


def test_later_jobs_backfill_only_gpus_the_waiting_job_cannot_use():
    boxes = [box("a", 4, busy={0: 90, 1: 91}), box("b", 1)]
    plan = schedule([Request(1, gpus=4), Request(2), Request(3)], boxes)
    assert plan.reserved == ("a", (0, 1, 2, 3))
    assert started(plan) == {2: ("b", (0,))}  # box a is kept for job 1; job 3 waits


def simulate(stream: list[tuple[int, Request, int]], gpus: int, ticks: int, *,
             sharing: bool = False, reservations: bool = True) -> dict[int, int]:
    """Run the scheduler once a tick on one box; (arrival, request, duration) per job.
    Returns each started job's start tick."""
    queue: list[Request] = []
    running: list[tuple[int, Request, tuple[int, ...]]] = []  # (end tick, request, GPUs)
    starts: dict[int, int] = {}
    durations = {request.job_id: duration for _, request, duration in stream}
    for tick in range(ticks):
        queue += [request for arrival, request, _ in stream if arrival == tick]
        running = [r for r in running if r[0] > tick]
        state = box("a", gpus)
        for _, request, indices in running:
            for i in indices:
                state.gpus[i].jobs.append(request.job_id)
                if sharing and request.memory_gb is not None and request.gpus == 1:
                    state.gpus[i].claimed_gb += request.memory_gb
                else:
                    state.gpus[i].whole = True
        plan = schedule(queue, [state], sharing=sharing, reservations=reservations)
        for a in plan.assignments:
            request = next(r for r in queue if r.job_id == a.job_id)
            queue.remove(request)
            running.append((tick + durations[a.job_id], request, a.gpus))
            starts[a.job_id] = tick
    return starts


def small_stream(seed: int, memory: bool) -> list[tuple[int, Request, int]]:
    """Three one-GPU jobs arriving every tick for 300 ticks (more than 4 GPUs can run:
    the queue never empties), each 1-6 ticks long; and one 4-GPU job at tick 10."""
    rng = random.Random(seed)
    stream, job = [], 0
    for tick in range(300):
        for _ in range(3):
            job += 1
            stream.append((tick, Request(job, memory_gb=rng.choice([10, 20, 40]) if memory
                                         else None), rng.randint(1, 6)))
    stream.append((10, Request(10_000, gpus=4), 5))
    return stream


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("sharing", [False, True])
def test_a_big_job_is_not_starved_by_a_stream_of_small_ones(seed, sharing):
    stream = small_stream(seed, memory=sharing)
    starts = simulate(stream, gpus=4, ticks=300, sharing=sharing)
    # It becomes the head of the queue once the small jobs queued before it have started;
    # from then on the GPUs it reserved only drain (at most 6 ticks).
    before = [j for arrival, r, _ in stream if arrival <= 10 and r.job_id != 10_000
              for j in [r.job_id]]
    head_at = max(starts[j] for j in before)
    assert starts[10_000] <= head_at + 6
    # Without the reservation, the same stream holds it back until all four GPUs happen to
    # free at once (ticks 113-180 in these streams) or, with sharing, for good.
    greedy = simulate(stream, gpus=4, ticks=300, sharing=sharing, reservations=False)
    assert greedy.get(10_000, 300) > starts[10_000] + 50
