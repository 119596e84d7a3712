"""The GPUs this worker may use, behind one small interface (a GpuSource).

NVML (the nvidia-ml-py package) when it loads, else torch's device count; neither creates a
CUDA context, so the Celery parent process can ask (its forked children could not use a GPU
it had initialised). GPUs are numbered as CUDA numbers them in this worker: CUDA_VISIBLE_DEVICES
(the operator's restriction, the one-worker-per-GPU layout) first, then TUNEDECK_GPUS picks
among those. Tests hand the scheduler fake inventories (tests/worker/test_scheduler.py).
"""
from __future__ import annotations

import importlib
import logging
from dataclasses import asdict, dataclass
from typing import Protocol

from app.config import Settings
from app.db import session_scope, utcnow
from app.workers import store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Gpu:
    index: int                      # the CUDA index in this worker (0, 1, ...)
    device: str                     # what a job's CUDA_VISIBLE_DEVICES names it by
    name: str
    memory_total_mb: int | None = None
    memory_used_mb: int | None = None
    utilization: float | None = None

    @property
    def memory_gb(self) -> float | None:
        return None if self.memory_total_mb is None else self.memory_total_mb / 1024


class GpuSource(Protocol):
    def physical(self) -> list[Gpu]:
        """Every GPU of the box, by physical index (device = that index)."""
        ...


class NvmlSource:
    """NVML's view: names, memory and utilisation; no CUDA context."""

    def physical(self) -> list[Gpu]:
        import pynvml  # nvidia-ml-py, the worker extra; absent on some installs

        pynvml.nvmlInit()
        try:
            return [self._gpu(pynvml, i) for i in range(pynvml.nvmlDeviceGetCount())]
        finally:
            pynvml.nvmlShutdown()

    @staticmethod
    def _gpu(pynvml, i: int) -> Gpu:
        handle = pynvml.nvmlDeviceGetHandleByIndex(i)
        memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
        name = pynvml.nvmlDeviceGetName(handle)
        busy = pynvml.nvmlDeviceGetUtilizationRates(handle).gpu
        return Gpu(i, str(i), name.decode() if isinstance(name, bytes) else str(name),
                   int(memory.total // 2**20), int(memory.used // 2**20), float(busy))


class TorchSource:
    """The count alone, where NVML is missing (ROCm, no nvidia-ml-py)."""

    def physical(self) -> list[Gpu]:
        # Loaded here, not at the top: the sweep process and `python -m worker --sweep-once`
        # import this module (to advertise GPUs) and start in a fraction of torch's import.
        torch = importlib.import_module("torch")
        if not torch.cuda.is_available():
            return []
        return [Gpu(i, str(i), f"CUDA device {i}") for i in range(torch.cuda.device_count())]


class FakeSource:
    """TUNEDECK_FAKE_GPUS ("2x80"): GPUs that are not there, for tests of the scheduling;
    jobs placed on them find no CUDA and train on the CPU."""

    def __init__(self, spec: str):
        count, _, memory = spec.partition("x")
        self.count, self.memory_mb = int(count), int(float(memory or 80) * 1024)

    def physical(self) -> list[Gpu]:
        return [Gpu(i, str(i), "fake GPU", self.memory_mb, 0, 0.0) for i in range(self.count)]


def default_source(settings: Settings | None = None) -> GpuSource:
    if settings is not None and settings.fake_gpus:
        return FakeSource(settings.fake_gpus)
    try:
        NvmlSource().physical()
    except Exception:  # noqa: BLE001 - no driver, no library: torch's count, often none
        return TorchSource()
    return NvmlSource()


def visible(physical: list[Gpu], cuda_visible: str | None, restrict: list[int] | None) -> list[Gpu]:
    """The box's GPUs as this worker numbers them: CUDA_VISIBLE_DEVICES' order (integers or
    nothing; a UUID list is taken as given by NVML's order), then TUNEDECK_GPUS' indices."""
    gpus = physical
    if cuda_visible is not None:
        wanted = [d.strip() for d in cuda_visible.split(",") if d.strip()]
        if all(d.isdigit() for d in wanted):
            by_id = {g.device: g for g in physical}
            gpus = [by_id[d] for d in wanted if d in by_id]
        else:
            gpus = physical[:len(wanted)]
    gpus = [Gpu(i, g.device, g.name, g.memory_total_mb, g.memory_used_mb, g.utilization)
            for i, g in enumerate(gpus)]
    if restrict is not None:
        gpus = [g for g in gpus if g.index in set(restrict)]
    return gpus


def discover(settings: Settings, source: GpuSource | None = None) -> list[Gpu]:
    """This worker's GPUs (empty on a CPU-only worker)."""
    try:
        physical = (source or default_source(settings)).physical()
    except Exception:
        log.exception("could not list this worker's GPUs; running as a CPU worker")
        return []
    return visible(physical, settings.cuda_visible_devices, settings.gpu_list)


def advertise(settings: Settings, worker_id: str, source: GpuSource | None = None) -> list[Gpu]:
    """Write this worker's GPUs (memory, utilisation now) with a fresh heartbeat; the submit
    refuses what no live worker could run, the GPUs page lists them."""
    gpus = discover(settings, source)
    rows = [{k: v for k, v in asdict(g).items() if k != "device"} for g in gpus]
    with session_scope() as session:
        store.advertise(session, worker_id, rows, settings.ddp_cpu, settings.gpu_sharing,
                             utcnow())
    return gpus


def withdraw(worker_id: str) -> None:
    """A worker that stops takes its row away (a killed one's row just goes stale)."""
    with session_scope() as session:
        store.forget(session, worker_id)
