"""P8: the job list page with 10,000 jobs: server time through the ASGI app, in process.

10,000 jobs in every state (as the worker leaves them) in a fresh database; GET /jobs (the
dashboard's first page, 25 rows, status filter and pager), its last page and the rows
partial the page polls every 2 s, each timed through create_app() on an in-process ASGI
transport (no socket, no browser): the server's own time. SQLite (the default) and
PostgreSQL when reachable. benchmarks/pages.py times the same pages over HTTP.

    .venv/bin/python -m benchmarks.joblist [--runs 21]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from benchmarks.common import (
    Row,
    Skip,
    app_client,
    database,
    median,
    ms,
    p95,
    print_rows,
    seed_jobs,
    skipped,
    timed_get,
)

JOBS = 10_000
TARGET_MS = 100


def measure(kind: str, runs: int) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix=f"tunedeck-p8-{kind}-") as tmp, \
            database(kind, Path(tmp)) as url:
        from app.db import make_engine

        engine = make_engine(url)
        seed_jobs(engine, JOBS)
        engine.dispose()
        last = -(-JOBS // 25)
        cases = {"/jobs": "bert-mrpc-9999<", f"/jobs?page={last}": "bert-mrpc-0<",
                 "/jobs/table": "bert-mrpc-9999<"}
        times = {}
        with app_client(Path(tmp), url) as client:
            for path, expected in cases.items():
                samples, response = timed_get(client, path, runs)
                if expected not in response.text:
                    raise RuntimeError(f"GET {path}: {expected!r} not in the page")
                times[path] = samples
    first = ms(median(times["/jobs"]))
    details = {path: {"median_ms": ms(median(s)), "p95_ms": ms(p95(s))}
               for path, s in times.items()}
    return [
        Row("P8", f"job list page, {JOBS:,} jobs, {kind}: server time (median)", first, "ms",
            f"<= {TARGET_MS} ms", first <= TARGET_MS, details),
        Row("P8", f"  last page / rows partial (2 s poll), {kind} (medians)",
            f"{ms(median(times[f'/jobs?page={last}'])):.1f} / "
            f"{ms(median(times['/jobs/table'])):.1f}", "ms", "report"),
    ]


def run(quick: bool = False) -> list[Row]:
    rows = []
    for kind in ("sqlite", "postgresql"):
        try:
            rows += measure(kind, 9 if quick else 21)
        except Skip as exc:
            rows.append(skipped("P8", f"job list page, {JOBS:,} jobs, {kind}", str(exc)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    for kind in ("sqlite", "postgresql"):
        print_rows(measure(kind, args.runs))


if __name__ == "__main__":
    main()
