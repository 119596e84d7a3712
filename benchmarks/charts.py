"""P4: the chart history of a job with 1,000,000 metric points, on SQLite and PostgreSQL.

The points go in by bulk insert (executemany on SQLite, COPY on PostgreSQL), then the tiles
the worker's writes keep up to date are built once with store.refresh_metric_tiles (what
the migration does for points stored before tiles existed). Timed: GET
/api/v1/jobs/{id}/metrics?max_points=2000 through the ASGI app in this process, the same
request the job page makes. Checked: every series has at most 2000 points and keeps its first,
last, min and max point. For comparison the same request also runs before the tiles exist,
which reads every point (tunedeck's path before the tiles).

    .venv/bin/python -m benchmarks.charts [--quick]
"""
from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from benchmarks.common import (
    Row,
    Skip,
    app_client,
    database,
    median,
    ms,
    quick_main,
    seed_jobs,
    skipped,
    timed_get,
)

MAX_POINTS = 2000
TRAIN_SERIES = ("train/loss", "train/learning_rate", "train/grad_norm")
EVAL_SERIES = ("eval/loss", "eval/accuracy", "eval/f1")
TARGET_MS = {"sqlite": 300, "postgresql": 100}


def points(job_id: int, steps: int) -> Iterator[tuple]:
    """3 train series every step and 3 eval series every 1000 steps (steps=333,000: 999,999)."""
    from app.db import utcnow

    now = utcnow()
    for step in range(1, steps + 1):
        loss = 0.7 * 0.99999 ** step + 0.05 * ((step * 7919) % 97) / 97
        yield job_id, TRAIN_SERIES[0], step, loss, now
        yield job_id, TRAIN_SERIES[1], step, 2e-5 * (1 - step / steps), now
        yield job_id, TRAIN_SERIES[2], step, 1 + (step % 13) / 13 + (step == steps // 3), now
        if step % 1000 == 0:
            for name in EVAL_SERIES:
                yield job_id, name, step, 0.5 + step / steps / 3, now


def bulk_insert(engine: Engine, rows: Iterator[tuple]) -> None:
    columns = "job_id, name, step, value, created_at"
    if engine.dialect.name == "postgresql":
        raw = engine.raw_connection()
        try:
            with raw.driver_connection.cursor() as cursor, cursor.copy(
                    f"COPY metric_points ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            raw.commit()
        finally:
            raw.close()
        return
    with engine.begin() as conn:
        conn.exec_driver_sql(f"INSERT INTO metric_points ({columns}) VALUES (?, ?, ?, ?, ?)",
                             list(rows))


def build_tiles(engine: Engine, job_id: int, last_step: int) -> float:
    from app.jobs import store

    start = time.perf_counter()
    with Session(engine) as session:
        store.refresh_metric_tiles(session, job_id, 0, last_step)
        session.commit()
    return time.perf_counter() - start


def truth(engine: Engine, job_id: int) -> dict[str, dict[str, Any]]:
    """Per series: the count, first and last point, min and max value, straight from SQL."""
    found = {}
    with engine.connect() as conn:
        summary = conn.execute(text(
            "SELECT name, COUNT(*), MIN(step), MAX(step), MIN(value), MAX(value) "
            "FROM metric_points WHERE job_id = :j GROUP BY name"), {"j": job_id}).all()
        for name, count, lo, hi, low, high in summary:
            value = "SELECT value FROM metric_points WHERE job_id = :j AND name = :n AND step = :s"
            first = conn.execute(text(value), {"j": job_id, "n": name, "s": lo}).scalar_one()
            last = conn.execute(text(value), {"j": job_id, "n": name, "s": hi}).scalar_one()
            found[name] = {"count": count, "first": (lo, first), "last": (hi, last),
                           "min": low, "max": high}
    return found


def problems(series: dict[str, dict], expected: dict[str, dict]) -> list[str]:
    found = []
    for name, want in expected.items():
        got = series.get(name)
        if got is None:
            found.append(f"{name} missing")
            continue
        steps, values = got["steps"], got["values"]
        checks = {"<= 2000 points": len(steps) <= MAX_POINTS,
                  "first kept": (steps[0], values[0]) == want["first"],
                  "last kept": (steps[-1], values[-1]) == want["last"],
                  "min kept": min(values) == want["min"], "max kept": max(values) == want["max"]}
        found += [f"{name}: not {check}" for check, ok in checks.items() if not ok]
    return found


def measure(kind: str, steps: int, runs: int) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix=f"tunedeck-p4-{kind}-") as tmp, \
            database(kind, Path(tmp)) as url:
        from app.db import make_engine

        engine = make_engine(url)
        job_id = seed_jobs(engine, 1)[0]
        start = time.perf_counter()
        bulk_insert(engine, points(job_id, steps))
        inserted = time.perf_counter() - start
        expected = truth(engine, job_id)
        total = sum(s["count"] for s in expected.values())
        path = f"/api/v1/jobs/{job_id}/metrics?max_points={MAX_POINTS}"
        with app_client(Path(tmp), url) as client:
            before, _ = timed_get(client, path, max(1, runs // 3))
            tiles = build_tiles(engine, job_id, steps)
            after, response = timed_get(client, path, runs)
        engine.dispose()
    series = response.json()["series"]
    wrong = problems(series, expected)
    value = ms(median(after))
    details = {"points": total, "runs_ms": [ms(s) for s in after],
               "without_tiles_ms": [ms(s) for s in before], "bulk_insert_s": round(inserted, 1),
               "tile_build_s": round(tiles, 1), "problems": wrong,
               "points_returned": {name: len(s["steps"]) for name, s in series.items()}}
    return [
        Row("P4", f"chart series, {total:,} points, {kind}: server time (median)", value, "ms",
            f"<= {TARGET_MS[kind]} ms", value <= TARGET_MS[kind] and not wrong, details),
        Row("P4", f"  same request before tiles (reads every point), {kind}",
            ms(median(before)), "ms", "report"),
        Row("P4", f"  points per series <= 2000, first/last/min/max kept, {kind}",
            "yes" if not wrong else "; ".join(wrong)[:120], "", "all", not wrong),
    ]


def run(quick: bool = False) -> list[Row]:
    steps, runs = (333_000, 7) if not quick else (333_000, 5)
    rows = []
    for kind in ("sqlite", "postgresql"):
        try:
            rows += measure(kind, steps, runs)
        except Skip as exc:
            rows.append(skipped("P4", f"chart series, 1M points, {kind}", str(exc),
                                f"<= {TARGET_MS[kind]} ms"))
    return rows


def main() -> None:
    quick_main(run, __doc__)


if __name__ == "__main__":
    main()
