"""benchmarks/gpu_check.py, run small: every row must go as this machine's hardware says.

On CPU that means fp32 trains (through Trainer and through worker.training) and fp16 and bf16
are refused with worker.gpu's messages; on a GPU the same test expects them to train.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from benchmarks import gpu_check
from worker import gpu


def test_gpu_check_runs_small(tmp_path: Path, capsys):
    report = tmp_path / "gpu_check.json"
    status = gpu_check.main(["--model", "tiny", "--steps", "4", "--batch-size", "4",
                             "--json", str(report)])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "| recipe | checkpoint | precision |" in out
    rows = json.loads(report.read_text())["rows"]
    assert {(r["recipe"], r["precision"]) for r in rows} >= {
        (recipe, p) for recipe in ("trainer", "tunedeck") for p in ("fp32", "fp16", "bf16")}
    for row in rows:
        assert row["outcome"] == row["expect"], row
        if row["outcome"] == "ok":
            assert row["losses"] and row["samples_per_second"] > 0
    fp32 = next(r for r in rows if r["recipe"] == "trainer" and r["precision"] == "fp32")
    assert fp32["weights_dtype"] == "float32"
    if not torch.cuda.is_available():
        refused = {r["precision"]: r["detail"] for r in rows if r["recipe"] == "trainer"}
        assert refused["fp16"] == gpu.FP16_NEEDS_CUDA
        assert refused["bf16"] == gpu.BF16_NEEDS_GPU
