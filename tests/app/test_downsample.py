"""M4 downsampling of long metric series (the chart's history)."""
from __future__ import annotations

import random

from app.db import session_scope
from app.jobs import service
from app.jobs.models import MetricPoint
from tests.app.factories import make_job


def test_m4_keeps_first_last_min_and_max_of_each_bucket():
    rng = random.Random(0)
    points = [(step, rng.random()) for step in range(1, 100_001)]
    points[500] = (501, -5.0)
    points[70_000] = (70_001, 9.0)
    kept = service.m4(points, 500)
    assert len(kept) <= 2000 and kept == sorted(kept)
    assert kept[0] == points[0] and kept[-1] == points[-1]
    assert (501, -5.0) in kept and (70_001, 9.0) in kept
    for bucket in range(0, 100_000, 200):
        chunk = points[bucket:bucket + 200]
        assert {chunk[0], chunk[-1], min(chunk, key=lambda p: p[1]),
                max(chunk, key=lambda p: p[1])} <= set(kept)


def test_long_series_come_back_downsampled_short_ones_whole(settings_env):
    job_id = make_job()
    with session_scope() as session:
        session.add_all(MetricPoint(job_id=job_id, name="train/loss", step=s, value=1 / s)
                        for s in range(1, 5001))
        session.add_all(MetricPoint(job_id=job_id, name="eval/loss", step=s, value=1 / s)
                        for s in range(500, 5001, 500))
    with session_scope() as session:
        out = service.metric_series(session, job_id, max_points=2000)
    loss = out.series["train/loss"]
    assert len(loss.steps) <= 2000 and loss.steps[0] == 1 and loss.steps[-1] == 5000
    assert out.series["eval/loss"].steps == list(range(500, 5001, 500))
