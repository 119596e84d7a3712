"""P14: GET /api/v1/compare of 5 jobs with 100,000 metric points each, on SQLite and PostgreSQL.

Each job gets benchmarks/charts.py's series over 33,333 steps (3 train series every step, 3
eval series every 1,000 steps: 100,098 points), bulk-inserted with their tiles built, and
1,000 text-classification predictions on the same split (so the flips' summary is computed
over 1,000 shared rows, about a fifth of them flipped). Timed: GET
/api/v1/compare?jobs=1,2,3,4,5 (the default, 500 points per series) through the ASGI app in
this process. Checked: every job's every series is there with at most 500 points, and the
flips were comparable. Reported too: the same with max_points=2000 (the job page's density),
which reads the finer tiles.

    .venv/bin/python -m benchmarks.compare [--quick]
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from sqlalchemy import insert
from sqlalchemy.engine import Engine

from benchmarks.charts import (
    EVAL_SERIES,
    TRAIN_SERIES,
    build_tiles,
    bulk_insert,
    points,
)
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

JOBS, STEPS, ROWS = 5, 33_333, 1_000
TARGET_MS = 300
MAX_POINTS = 500  # GET /api/v1/compare's default


def predictions(engine: Engine, job_id: int, salt: int) -> None:
    """ROWS text-classification rows on `validation`; which ones are right depends on salt."""
    from app.jobs.models import Prediction

    rows = []
    for i in range(ROWS):
        label = "pos" if i % 2 else "neg"
        right = (i * 7 + salt * 13) % 10 < 8
        predicted = label if right else ("neg" if label == "pos" else "pos")
        rows.append({"job_id": job_id, "split": "validation", "row": i,
                     "inputs": {"sentence1": f"row {i}", "sentence2": "the other"},
                     "label": label, "prediction": predicted, "confidence": 0.75,
                     "probabilities": {predicted: 0.75}, "correct": right})
    with engine.begin() as conn:
        conn.execute(insert(Prediction), rows)


def problems(body: dict, ids: list[int]) -> list[str]:
    found = []
    for job_id in ids:
        series = body["series"].get(str(job_id), {})
        missing = set(TRAIN_SERIES + EVAL_SERIES) - set(series)
        found += [f"job {job_id}: {name} missing" for name in sorted(missing)]
        found += [f"job {job_id}: {name} has {len(s['steps'])} points"
                  for name, s in series.items() if len(s["steps"]) > MAX_POINTS]
    if not body["flips"]["comparable"]:
        found.append(f"flips not comparable: {body['flips']['reason']}")
    return found


def measure(kind: str, runs: int) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix=f"tunedeck-p14-{kind}-") as tmp, \
            database(kind, Path(tmp)) as url:
        from app.db import make_engine

        engine = make_engine(url)
        ids = seed_jobs(engine, JOBS)
        for salt, job_id in enumerate(ids):
            bulk_insert(engine, points(job_id, STEPS))
            build_tiles(engine, job_id, STEPS)
            predictions(engine, job_id, salt)
        path = f"/api/v1/compare?jobs={','.join(map(str, ids))}"
        with app_client(Path(tmp), url) as client:
            samples, response = timed_get(client, path, runs)
            dense, _ = timed_get(client, path + "&max_points=2000", max(1, runs // 3))
        engine.dispose()
    body = response.json()
    wrong = problems(body, ids)
    value = ms(median(samples))
    per_job = sum(1 for _ in points(0, STEPS))
    details = {"jobs": JOBS, "points_per_job": per_job, "predictions_per_job": ROWS,
               "runs_ms": [ms(s) for s in samples], "problems": wrong,
               "max_points_2000_ms": [ms(s) for s in dense],
               "flipped": body["flips"]["flipped"], "response_bytes": len(response.content)}
    return [Row("P14", f"compare of {JOBS} jobs, {per_job:,} points each, {kind}: server "
                "time (median)", value, "ms", f"<= {TARGET_MS} ms",
                value <= TARGET_MS and not wrong, details),
            Row("P14", f"  same with max_points=2000 per series, {kind}", ms(median(dense)),
                "ms", "report")]


def run(quick: bool = False) -> list[Row]:
    rows = []
    for kind in ("sqlite", "postgresql"):
        try:
            rows += measure(kind, 5 if quick else 9)
        except Skip as exc:
            rows.append(skipped("P14", f"compare of {JOBS} jobs, {kind}", str(exc),
                                f"<= {TARGET_MS} ms"))
    return rows


if __name__ == "__main__":
    quick_main(run, __doc__)
