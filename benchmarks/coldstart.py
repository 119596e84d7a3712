"""P7: web process cold start, resident memory, and no torch/transformers/datasets in it.

Starts `tunedeck serve --no-worker` (uvicorn serving create_app()) and times process start ->
the first 200 on /healthz: on a fresh data dir (the schema is created first) and again on the
existing one (a restart). Then the web process's resident memory (psutil) after a few
requests, whether libtorch is mapped into it (/proc/PID/maps), and, in a separate python,
whether importing the web app (app.cli, app.main.create_app) imports torch, transformers or
datasets.

    .venv/bin/python -m benchmarks.coldstart [--starts 3]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import psutil

from benchmarks.common import REPO, Row, median, print_rows, tunedeck_serve

START_TARGET_S = 2.0
RSS_TARGET_MB = 150
HEAVY = ("torch", "transformers", "datasets")
IMPORT_CHECK = ("import sys, app.cli, app.main; app.main.create_app(); "
                f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")


def start_once(data_dir: Path) -> tuple[float, float, float, bool]:
    """(seconds to the first 200, CPU seconds until then, RSS in MB, libtorch mapped)."""
    url = f"sqlite:///{data_dir / 'tunedeck.db'}"
    server = tunedeck_serve(data_dir, url, "--no-worker")
    try:
        seconds = server.wait_ready(timeout=60)
        cpu = sum(psutil.Process(server.process.pid).cpu_times()[:2])
        for path in ("/healthz", "/jobs", "/api/v1/jobs", "/openapi.json"):
            httpx.get(server.url + path, timeout=10)
        process = psutil.Process(server.process.pid)
        rss = process.memory_info().rss / 2**20
        maps = Path(f"/proc/{process.pid}/maps")
        torch_mapped = maps.exists() and "libtorch" in maps.read_text()
    finally:
        server.stop()
    return seconds, cpu, rss, torch_mapped


def imported_heavy() -> str:
    done = subprocess.run([sys.executable, "-c", IMPORT_CHECK], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=True)
    return done.stdout.strip()


def run(starts: int = 3) -> list[Row]:
    fresh, restart, cpu, rss, mapped = [], [], [], [], False
    for _ in range(starts):
        with tempfile.TemporaryDirectory(prefix="tunedeck-p7-") as tmp:
            fresh.append(start_once(Path(tmp))[0])
            seconds, cpu_seconds, memory, torch_mapped = start_once(Path(tmp))
            restart.append(seconds)
            cpu.append(cpu_seconds)
            rss.append(memory)
            mapped = mapped or torch_mapped
    heavy = imported_heavy()
    details = {"fresh_s": [round(s, 2) for s in fresh],
               "restart_s": [round(s, 2) for s in restart], "cpu_s": [round(c, 2) for c in cpu],
               "rss_mb": [round(m, 1) for m in rss], "libtorch_mapped": mapped,
               "imported_by_the_web_app": heavy or "none"}
    start_s, memory = median(restart), median(rss)
    return [
        Row("P7", "web process start -> first 200 on /healthz, restart (median)",
            round(start_s, 2), "s", f"<= {START_TARGET_S} s", start_s <= START_TARGET_S, details),
        Row("P7", "  same, CPU seconds of the web process until then (noise-robust)",
            round(median(cpu), 2), "s", "report"),
        Row("P7", "  same, first start on a fresh data dir (creates the schema)",
            round(median(fresh), 2), "s", "report"),
        Row("P7", "web process resident memory after serving pages and API", round(memory, 1),
            "MB", f"<= {RSS_TARGET_MB} MB", memory <= RSS_TARGET_MB),
        Row("P7", "torch / transformers / datasets in the web process",
            heavy or ("libtorch mapped" if mapped else "none"), "", "none",
            not heavy and not mapped),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=3)
    print_rows(run(parser.parse_args().starts))


if __name__ == "__main__":
    main()
