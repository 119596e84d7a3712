"""GPU discovery behind a GpuSource: the worker's numbering (CUDA_VISIBLE_DEVICES, then
TUNEDECK_GPUS) and the row it advertises; placement of a job on what it found."""
from __future__ import annotations

import pytest

from app.config import get_settings
from app.db import session_scope
from app.workers.models import Worker
from worker.distributed import PlacementError, place
from worker.inventory import Gpu, advertise, visible


class FakeSource:
    def __init__(self, count: int):
        self.count = count

    def physical(self) -> list[Gpu]:
        return [Gpu(i, str(i), "H100", 81559, 10, 5.0) for i in range(self.count)]


def test_cuda_visible_devices_then_tunedeck_gpus():
    box = FakeSource(4).physical()
    assert [g.index for g in visible(box, None, None)] == [0, 1, 2, 3]
    pinned = visible(box, "2,3", None)  # the one-worker-per-GPU layout, or a slice of a box
    assert [(g.index, g.device) for g in pinned] == [(0, "2"), (1, "3")]
    assert [(g.index, g.device) for g in visible(box, "2,3", [1])] == [(1, "3")]
    assert visible(box, "", None) == []


def test_the_worker_advertises_its_gpus(settings_env, monkeypatch):
    monkeypatch.setenv("TUNEDECK_GPUS", "0,2")
    get_settings.cache_clear()
    advertise(get_settings(), "box@a", FakeSource(4))
    with session_scope() as session:
        row = session.get(Worker, "box@a")
        assert [g["index"] for g in row.gpus] == [0, 2]
        assert row.gpus[0]["memory_total_mb"] == 81559 and row.heartbeat_at is not None


def test_placement():
    gpus = FakeSource(4).physical()
    assert place({}, [], ddp_cpu=False).label == "cpu"
    assert place({"gpus": 0}, gpus, ddp_cpu=False).cpu_only
    one = place({}, gpus[:1], ddp_cpu=False)
    assert (one.label, one.launched) == ("cuda:0", False)  # the only GPU: in-process
    assert place({"gpus": 1}, gpus, ddp_cpu=False, assigned=[2]).label == "cuda:2"
    two = place({"gpus": 2}, gpus, ddp_cpu=False)
    assert (two.processes, two.label, two.launched) == (2, "cuda:0,1", True)
    assert place({"gpus": 2}, [], ddp_cpu=True).label == "cpu x2"
    with pytest.raises(PlacementError, match=r"resources\.gpus is 8, and this worker has 4"):
        place({"gpus": 8}, gpus, ddp_cpu=False)
    with pytest.raises(PlacementError, match="has no GPU"):
        place({"gpus": 1}, [], ddp_cpu=False)
