"""P5: small JSON endpoints under load: job detail and job list, on PostgreSQL.

`tunedeck serve --no-worker --workers N` serves a fresh PostgreSQL database holding 1,000 jobs,
with auth on as on any networked deployment (a token in TUNEDECK_API_TOKENS, sent as a bearer
header). N = one web process per core (the documented setting for API-heavy use; the target
row) and N = 1 (the default; reported). The load comes from another process: wrk (C,
`apt-get install wrk`) when it is installed, else benchmarks/loadgen.py (asyncio + httpx).
Each endpoint is loaded for a few seconds at a fixed number of connections; reported:
requests per second and the 95th percentile latency. wrk, PostgreSQL and the server share
this machine's cores.

    .venv/bin/python -m benchmarks.api_load [--seconds 10] [--connections 16]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import (
    REPO,
    Row,
    Skip,
    database,
    print_rows,
    seed_jobs,
    serving,
    skipped,
    tunedeck_serve,
)

JOBS = 1000
TOKEN = "td_benchmark-token-0123456789"
RPS_TARGET, P95_TARGET_MS = 1000, 50
WRK_SCRIPT = """
local paths = {}
init = function(args) for i, p in ipairs(args) do paths[i] = p end end
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", paths[(n % #paths) + 1])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %f %d\\n", summary.requests, summary.duration,
    latency:percentile(95), e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def wrk(url: str, paths: list[str], seconds: int, connections: int,
        headers: tuple[str, ...] = ()) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT)
    header_args = [arg for header in headers for arg in ("-H", header)]
    done = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", *header_args,
                           "-s", script.name, url, "--", *paths], capture_output=True, text=True,
                          timeout=seconds + 60, check=True)
    Path(script.name).unlink()
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT"))
    requests, duration_us, p95_us, errors = line.split()[1:]
    return {"rps": int(requests) / (int(duration_us) / 1e6), "p95_ms": float(p95_us) / 1000,
            "errors": int(errors), "generator": "wrk"}


def python_loadgen(url: str, paths: list[str], seconds: int, connections: int,
                   headers: tuple[str, ...] = ()) -> dict:
    header_args = [arg for header in headers for arg in ("--header", header)]
    done = subprocess.run([sys.executable, "-m", "benchmarks.loadgen", *header_args, url,
                           str(seconds), str(connections), *paths], cwd=REPO,
                          capture_output=True, text=True, timeout=seconds + 60, check=True)
    import json

    return {**json.loads(done.stdout.splitlines()[-1]), "generator": "benchmarks.loadgen"}


def measure(seconds: int, connections: int) -> list[Row]:
    load = wrk if shutil.which("wrk") else python_loadgen
    per_core = os.cpu_count() or 1
    rows = []
    with tempfile.TemporaryDirectory(prefix="tunedeck-p5-") as tmp, \
            database("postgresql", Path(tmp)) as url:
        from app.db import make_engine

        engine = make_engine(url)
        ids = seed_jobs(engine, JOBS)
        engine.dispose()
        cases = {"job detail": [f"/api/v1/jobs/{i}" for i in ids[::50]],
                 "job list": ["/api/v1/jobs?per_page=20", "/api/v1/jobs?page=2&per_page=20",
                              "/api/v1/jobs?status=running&per_page=20"]}
        headers = (f"Authorization: Bearer {TOKEN}",)
        for workers in sorted({per_core, 1}, reverse=True):
            server = tunedeck_serve(Path(tmp), url, "--no-worker", "--workers", str(workers),
                                    api_tokens=TOKEN)
            with serving(server):
                for name, paths in cases.items():
                    load(server.url, paths[:1], 2, connections, headers)  # warm up
                    r = load(server.url, paths, seconds, connections, headers)
                    rows.append(_row(name, r, workers, per_core, connections, seconds))
    return rows


def _row(name: str, r: dict, workers: int, per_core: int, connections: int,
         seconds: int) -> Row:
    ok = r["rps"] >= RPS_TARGET and r["p95_ms"] <= P95_TARGET_MS and not r["errors"]
    details = {**r, "connections": connections, "seconds": seconds, "jobs": JOBS,
               "server": f"tunedeck serve --no-worker --workers {workers}, auth on"}
    processes = f"{workers} web process{'es' if workers > 1 else ''}"
    target = f">= {RPS_TARGET}, p95 <= {P95_TARGET_MS} ms" if workers == per_core else "report"
    return Row("P5", f"{name} (JSON), PostgreSQL, {processes}: req/s, p95 "
               f"{r['p95_ms']:.1f} ms ({r['generator']}, {connections} connections)",
               round(r["rps"]), "req/s", target, ok if workers == per_core else None, details)


def run(quick: bool = False) -> list[Row]:
    try:
        return measure(5 if quick else 10, 16)
    except Skip as exc:
        return [skipped("P5", "job detail / job list under load, PostgreSQL", str(exc))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    print_rows(measure(args.seconds, args.connections))


if __name__ == "__main__":
    main()
