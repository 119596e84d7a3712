"""GPU facts and hygiene for the worker: precision checks, peak memory and utilisation, cleanup.

No Celery import. The runner and the recipe call these around each job:
`resolve_precision` before TrainingArguments are built, `GpuStats.snapshot` with every progress
write, and `release` after the job, whatever its outcome.

Nothing here initialises CUDA on import or when CUDA has not been used yet: the Celery parent
process must never hold a CUDA context (its forked children could not use the GPU), and a
snapshot taken before the model reaches the GPU must not create one either.
"""
from __future__ import annotations

import gc
import multiprocessing
import platform
from typing import Any

import torch

FP16_NEEDS_CUDA = "fp16 needs a CUDA GPU; this worker has none (set fp16: false)"
BF16_NEEDS_GPU = ("bf16 needs a GPU with bfloat16 support (Ampere or newer); this worker has "
                  "none (set bf16: false)")
BF16_UNSUPPORTED = ("bf16 needs a GPU with bfloat16 support (Ampere or newer); {name} (compute "
                    "capability {capability}) has none — use fp16 instead (set bf16: false, "
                    "fp16: true)")
BOTH = "fp16 and bf16 exclude each other; set at most one of them to true"


class PrecisionError(ValueError):
    """The mixed precision asked for cannot run on this worker's hardware."""


def device_type() -> str:
    """Where Trainer will train: 'cuda' (NVIDIA or ROCm), 'mps' or 'cpu'."""
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def bf16_supported() -> bool:
    """Native bfloat16 on this worker's GPU: compute capability 8.0+ (Ampere) or ROCm.

    torch.cuda.is_bf16_supported() also says yes where bf16 is only emulated (Turing and older),
    which is slower than fp32, so the capability is checked directly.
    """
    if not torch.cuda.is_available():
        return False
    return bool(torch.version.hip) or torch.cuda.get_device_capability()[0] >= 8


def resolve_precision(fp16: bool, bf16: bool) -> None:
    """Raise PrecisionError, with the fix in the message, if this worker can't run the precision.

    fp16 runs only on CUDA; bf16 only on a CUDA GPU with native bf16. Both are refused on CPU and
    MPS, although transformers would run bf16 on CPU through autocast: there it is slower than
    fp32 on most CPUs and changes the numbers, and a job that asked for a GPU precision and
    landed on a CPU worker should fail loudly rather than crawl.
    """
    if fp16 and bf16:
        raise PrecisionError(BOTH)
    if fp16 and not torch.cuda.is_available():
        raise PrecisionError(FP16_NEEDS_CUDA)
    if bf16 and not torch.cuda.is_available():
        raise PrecisionError(BF16_NEEDS_GPU)
    if bf16 and not bf16_supported():
        major, minor = torch.cuda.get_device_capability()
        raise PrecisionError(BF16_UNSUPPORTED.format(name=torch.cuda.get_device_name(),
                                                     capability=f"{major}.{minor}"))


def tf32_supported() -> bool:
    """TF32 tensor cores: NVIDIA compute capability 8.0+ (Ampere); transformers refuses it below."""
    if not torch.cuda.is_available() or torch.version.hip:
        return False
    return torch.cuda.get_device_capability()[0] >= 8


def resolve_auto(options: dict[str, Any]) -> list[str]:
    """Make the spec's "auto" values (the Fast preset) concrete for this worker, in place.

    bf16 "auto": bf16 on a GPU with native bf16, else fp16 on CUDA, else fp32 (never bf16 on
    CPU: slower than fp32 there). tf32 "auto": on CUDA capability 8.0+ only. Dataloader worker
    processes are dropped inside a daemonic process (a Celery pool child), which may not have
    children. Returns notes for the job's info lines.
    """
    notes: list[str] = []
    if options.get("bf16") == "auto":
        options["bf16"] = bf16_supported()
        options["fp16"] = bool(options.get("fp16")) or (
            torch.cuda.is_available() and not options["bf16"])
        chosen = "bf16" if options["bf16"] else "fp16" if options["fp16"] else "fp32"
        notes.append(f"Precision auto: {chosen} on this worker ({device_type()}).")
    if options.get("tf32") == "auto":
        options["tf32"] = True if tf32_supported() else None
        notes.append(f"TF32 auto: {'on' if options['tf32'] else 'off'} on this worker.")
    if options.get("dataloader_num_workers") and multiprocessing.current_process().daemon:
        notes.append(f"dataloader_num_workers {options['dataloader_num_workers']} -> 0: this "
                     "worker runs jobs in daemonic pool processes, which cannot start children.")
        options["dataloader_num_workers"] = 0
    return notes


def padding_multiple(spec: dict[str, Any]) -> int | None:
    """collator.pad_to_multiple_of where CUDA is present (tensor cores), else None."""
    multiple = (spec.get("collator") or {}).get("pad_to_multiple_of")
    return multiple if multiple and torch.cuda.is_available() else None


def device_summary() -> dict[str, Any]:
    """What this worker trains on, for logs and the job's info notes."""
    kind = device_type()
    summary: dict[str, Any] = {"type": kind, "name": platform.processor() or "cpu",
                               "count": 0, "capability": None, "total_memory_mb": None,
                               "fp16": kind == "cuda", "bf16": False}
    if kind == "mps":
        summary.update(name="Apple MPS", count=1)
    if kind == "cuda":
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        summary.update(name=props.name, count=torch.cuda.device_count(),
                       capability=f"{props.major}.{props.minor}",
                       total_memory_mb=round(props.total_memory / 2**20), bf16=bf16_supported())
    return summary


class GpuStats:
    """Peak GPU memory and utilisation of the current job; Nones on a worker without CUDA.

    `snapshot()` is called from the reporter's thread with every progress write. Utilisation is
    the mean of the samples taken since `reset_peak()` (NVML's busy percentage, one sample per
    snapshot), so the value stored on a finished job describes the whole run. It needs pynvml
    (the nvidia-ml-py package); without it utilisation stays None.
    """

    def __init__(self) -> None:
        self.enabled = torch.cuda.is_available()
        self._samples = 0
        self._busy_total = 0.0
        self._nvml = True

    def reset_peak(self) -> None:
        """Start a new measurement (the peak since the last reset is what a snapshot reports)."""
        self._samples, self._busy_total = 0, 0.0
        if self.enabled and torch.cuda.is_initialized():
            torch.cuda.reset_peak_memory_stats()

    def snapshot(self) -> dict[str, float | None]:
        return {"gpu_peak_memory_mb": self.peak_memory_mb(), "gpu_utilization": self.utilization()}

    def peak_memory_mb(self) -> float | None:
        """The most memory tensors have held at once (torch.cuda.max_memory_allocated), in MiB."""
        if not self._active():
            return None
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)

    def utilization(self) -> float | None:
        """Takes one NVML sample and returns the mean busy percentage so far."""
        if self._active() and self._nvml:
            try:
                busy = float(torch.cuda.utilization())
            except Exception:  # noqa: BLE001 - pynvml missing or NVML unusable here: stop asking
                self._nvml = False
            else:
                self._samples += 1
                self._busy_total += busy
        if not self._samples:
            return None
        return round(self._busy_total / self._samples, 1)

    def _active(self) -> bool:
        # Before the job first touches the GPU there is nothing to measure, and asking would
        # create a CUDA context from the reporter's thread.
        return self.enabled and torch.cuda.is_initialized()


def release() -> None:
    """Leave the process as a fresh one would be, so the next job gets the whole GPU.

    Collects the last job's model, optimizer and dataloader tensors, hands the allocator's cached
    blocks back to the driver and resets the peak counters. (`tunedeck worker` also runs each job
    in a fresh child process; this keeps in-process callers, like tests, just as clean.)
    """
    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
        # cuBLAS keeps its workspaces in the caching allocator, where empty_cache can't free
        # them; torch's own memory-leak checks clear them the same way.
        clear_workspaces = getattr(torch._C, "_cuda_clearCublasWorkspaces", None)
        if clear_workspaces is not None:
            clear_workspaces()
        torch.cuda.empty_cache()
        torch.cuda.ipc_collect()
        torch.cuda.reset_peak_memory_stats()
