"""worker.gpu: precision rules, GPU stats and cleanup.

CPU paths run everywhere; the GPU branches run on CPU against a faked torch.cuda, and against a
real GPU in the tests marked `cuda` (skipped without one). This module imports only torch and
worker.gpu, so it also runs on a GPU box with nothing else installed:
`python3 -m pytest --noconftest tests/worker/test_gpu.py`.
"""
from __future__ import annotations

import pytest
import torch

from worker import gpu

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
cpu_only = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU messages")


# ---------------------------------------------------------------- without a GPU


@cpu_only
def test_fp16_is_refused_without_cuda():
    with pytest.raises(gpu.PrecisionError) as info:
        gpu.resolve_precision(fp16=True, bf16=False)
    assert str(info.value) == "fp16 needs a CUDA GPU; this worker has none (set fp16: false)"


@cpu_only
def test_bf16_is_refused_without_cuda():
    with pytest.raises(gpu.PrecisionError) as info:
        gpu.resolve_precision(fp16=False, bf16=True)
    assert str(info.value) == ("bf16 needs a GPU with bfloat16 support (Ampere or newer); "
                               "this worker has none (set bf16: false)")


def test_precision_error_is_a_value_error():
    assert issubclass(gpu.PrecisionError, ValueError)


def test_fp16_and_bf16_together_are_refused_first():
    with pytest.raises(gpu.PrecisionError, match="fp16 and bf16 exclude each other"):
        gpu.resolve_precision(fp16=True, bf16=True)


def test_fp32_is_allowed_everywhere():
    gpu.resolve_precision(fp16=False, bf16=False)


@cpu_only
def test_snapshot_is_none_without_cuda():
    stats = gpu.GpuStats()
    stats.reset_peak()
    assert stats.snapshot() == {"gpu_peak_memory_mb": None, "gpu_utilization": None}


@cpu_only
def test_device_summary_on_cpu():
    summary = gpu.device_summary()
    assert summary["type"] in ("cpu", "mps")
    assert summary["fp16"] is False and summary["bf16"] is False
    assert summary["total_memory_mb"] is None


def test_release_is_harmless_anywhere():
    gpu.release()
    gpu.release()


# ---------------------------------------------------------------- GPU branches, faked


class FakeCuda:
    """Just enough of torch.cuda for the precision rules on a named GPU."""

    def __init__(self, name: str, capability: tuple[int, int]):
        self.name, self.capability = name, capability

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: self.capability)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: self.name)
        monkeypatch.setattr(torch.version, "hip", None)


def test_bf16_is_refused_on_a_pre_ampere_gpu_naming_it(monkeypatch):
    FakeCuda("Tesla T4", (7, 5)).install(monkeypatch)
    with pytest.raises(gpu.PrecisionError) as info:
        gpu.resolve_precision(fp16=False, bf16=True)
    assert str(info.value) == (
        "bf16 needs a GPU with bfloat16 support (Ampere or newer); Tesla T4 (compute capability "
        "7.5) has none — use fp16 instead (set bf16: false, fp16: true)")


def test_fp16_is_allowed_on_a_pre_ampere_gpu(monkeypatch):
    FakeCuda("Tesla T4", (7, 5)).install(monkeypatch)
    gpu.resolve_precision(fp16=True, bf16=False)


@pytest.mark.parametrize("capability", [(8, 0), (8, 6), (9, 0), (12, 0)])
def test_bf16_is_allowed_from_ampere_on(monkeypatch, capability):
    FakeCuda("Some GPU", capability).install(monkeypatch)
    gpu.resolve_precision(fp16=False, bf16=True)


def test_bf16_is_allowed_on_rocm(monkeypatch):
    FakeCuda("AMD Instinct MI250X", (9, 0)).install(monkeypatch)
    monkeypatch.setattr(torch.version, "hip", "6.2")
    assert gpu.bf16_supported()


def test_utilisation_without_pynvml_is_none_and_not_retried(monkeypatch):
    calls = []

    def utilization(*_args):
        calls.append(1)
        raise ModuleNotFoundError("pynvml does not seem to be installed")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a: 3 * 2**20)
    monkeypatch.setattr(torch.cuda, "utilization", utilization)
    stats = gpu.GpuStats()
    assert stats.snapshot() == {"gpu_peak_memory_mb": 3.0, "gpu_utilization": None}
    assert stats.snapshot()["gpu_utilization"] is None
    assert len(calls) == 1


def test_utilisation_is_the_mean_of_the_samples(monkeypatch):
    samples = iter([90, 70, 80])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a: 0)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda *a: None)
    monkeypatch.setattr(torch.cuda, "utilization", lambda *a: next(samples))
    stats = gpu.GpuStats()
    assert stats.snapshot()["gpu_utilization"] == 90.0
    assert stats.snapshot()["gpu_utilization"] == 80.0
    stats.reset_peak()
    assert stats.snapshot()["gpu_utilization"] == 80.0


def test_nothing_is_measured_before_the_job_touches_the_gpu(monkeypatch):
    def forbidden(*_args):
        raise AssertionError("would create a CUDA context")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    for name in ("max_memory_allocated", "utilization", "reset_peak_memory_stats",
                 "empty_cache", "synchronize"):
        monkeypatch.setattr(torch.cuda, name, forbidden)
    stats = gpu.GpuStats()
    stats.reset_peak()
    assert stats.snapshot() == {"gpu_peak_memory_mb": None, "gpu_utilization": None}
    gpu.release()


# ---------------------------------------------------------------- on a real GPU


@cuda
def test_fp16_is_allowed_on_cuda():
    gpu.resolve_precision(fp16=True, bf16=False)


@cuda
def test_bf16_follows_the_capability():
    major, _ = torch.cuda.get_device_capability()
    if major >= 8 or torch.version.hip:
        gpu.resolve_precision(fp16=False, bf16=True)
    else:
        with pytest.raises(gpu.PrecisionError, match=torch.cuda.get_device_name()):
            gpu.resolve_precision(fp16=False, bf16=True)


@cuda
def test_device_summary_on_cuda():
    summary = gpu.device_summary()
    assert summary["type"] == "cuda"
    assert summary["name"] == torch.cuda.get_device_name()
    assert summary["total_memory_mb"] > 1000
    assert summary["fp16"] is True
    assert summary["bf16"] == (torch.cuda.get_device_capability()[0] >= 8)


@cuda
def test_peak_memory_follows_allocations_and_resets():
    stats = gpu.GpuStats()
    block = torch.empty(256 * 2**20, dtype=torch.uint8, device="cuda")  # 256 MiB
    assert stats.snapshot()["gpu_peak_memory_mb"] >= 256
    del block
    gpu.release()
    stats.reset_peak()
    assert stats.snapshot()["gpu_peak_memory_mb"] < 256


@cuda
def test_utilisation_is_sampled_when_pynvml_is_installed():
    pytest.importorskip("pynvml")
    stats = gpu.GpuStats()
    x = torch.randn(4096, 4096, device="cuda")
    for _ in range(20):
        x = (x @ x).clamp_(-1, 1)
    utilization = stats.snapshot()["gpu_utilization"]
    assert utilization is not None and 0 <= utilization <= 100


@cuda
def test_release_hands_cached_memory_back_to_the_driver():
    model = torch.nn.Linear(4096, 4096).cuda()
    loss = model(torch.randn(512, 4096, device="cuda")).square().mean()
    loss.backward()
    assert torch.cuda.memory_reserved() > 0
    held = torch.cuda.memory_reserved()
    del model, loss
    gpu.release()
    # All of it goes back to the driver; at most a library workspace may stay (a few MiB).
    assert torch.cuda.memory_reserved() <= min(held // 4, 32 * 2**20)
    assert torch.cuda.max_memory_allocated() == torch.cuda.memory_allocated()


# ---------------------------------------------------------------- the Fast preset's "auto" values

FAST = {"bf16": "auto", "tf32": "auto", "dataloader_num_workers": 2}


@cpu_only
def test_auto_is_fp32_without_tf32_on_cpu():
    options = dict(FAST)
    notes = gpu.resolve_auto(options)
    assert options == {"bf16": False, "fp16": False, "tf32": None, "dataloader_num_workers": 2}
    assert notes[0] == "Precision auto: fp32 on this worker (cpu)."
    assert gpu.padding_multiple({"collator": {"pad_to_multiple_of": 8}}) is None


@pytest.mark.parametrize(("name", "capability", "chosen"),
                         [("Tesla T4", (7, 5), {"bf16": False, "fp16": True, "tf32": None}),
                          ("A100", (8, 0), {"bf16": True, "fp16": False, "tf32": True}),
                          ("H100", (9, 0), {"bf16": True, "fp16": False, "tf32": True})])
def test_auto_follows_the_gpu(monkeypatch, name, capability, chosen):
    FakeCuda(name, capability).install(monkeypatch)
    options = dict(FAST)
    gpu.resolve_auto(options)
    assert {k: options[k] for k in chosen} == chosen
    gpu.resolve_precision(bool(options["fp16"]), bool(options["bf16"]))  # runnable there
    assert gpu.padding_multiple({"collator": {"pad_to_multiple_of": 8}}) == 8


def test_a_daemonic_process_trains_without_dataloader_workers(monkeypatch):
    import multiprocessing

    monkeypatch.setattr(multiprocessing.current_process(), "daemon", True, raising=False)
    options = {"dataloader_num_workers": 2}
    notes = gpu.resolve_auto(options)
    assert options["dataloader_num_workers"] == 0 and "daemonic" in notes[0]
