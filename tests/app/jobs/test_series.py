"""M4 downsampling of long metric series (the chart's history)."""
from __future__ import annotations

import random

import pytest

from app.db import session_scope
from app.jobs import series
from app.jobs.models import MetricPoint
from tests.app.factories import make_job


def test_m4_keeps_first_last_min_and_max_of_each_bucket():
    rng = random.Random(0)
    points = [(step, rng.random()) for step in range(1, 100_001)]
    points[500] = (501, -5.0)
    points[70_000] = (70_001, 9.0)
    kept = series.m4(points, 500)
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
        out = series.metric_series(session, job_id, max_points=2000)
    loss = out.series["train/loss"]
    assert len(loss.steps) <= 2000 and loss.steps[0] == 1 and loss.steps[-1] == 5000
    assert out.series["eval/loss"].steps == list(range(500, 5001, 500))


def reference_m4_tiles(tiles: list[tuple], buckets: int) -> list[tuple[int, float]]:
    """The plain statement of m4 over tiles: group by bucket, keep first/last/min/max."""
    from itertools import groupby

    lo, span = tiles[0][0], tiles[-1][2] - tiles[0][0] + 1
    kept = []
    for _, group in groupby(tiles, key=lambda t: (t[0] - lo) * buckets // span):
        rows = list(group)
        low, high = min(rows, key=lambda t: t[5]), max(rows, key=lambda t: t[7])
        kept.extend(sorted({rows[0][0:2], rows[-1][2:4], low[4:6], high[6:8]}))
    return kept


@pytest.mark.parametrize("seed", range(20))
def test_m4_tiles_matches_its_plain_statement(seed):
    rng = random.Random(seed)
    width, count = rng.choice([1, 16, 256]), rng.randint(1, 3000)
    tiles = []
    for i in range(count):
        first, last = i * width, i * width + width - 1
        values = [round(rng.gauss(0, 1), 1) for _ in range(4)]  # ties happen: first one wins
        tiles.append((first, values[0], last, values[1], first + rng.randrange(width),
                      min(values), first + rng.randrange(width), max(values)))
    for buckets in (1, 7, 500, 5000):
        assert series.m4_tiles(tiles, buckets) == reference_m4_tiles(tiles, buckets)
