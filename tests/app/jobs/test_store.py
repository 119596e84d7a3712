"""Metric tiles: kept exact by every write, and the chart's M4 read from them (SQLite, PostgreSQL)."""
from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, delete, select
from sqlalchemy.orm import Session, sessionmaker

from app.jobs import series, store
from app.jobs.models import Job, MetricPoint, MetricTile
from app.migrate import alembic_config, upgrade
from tests.fixtures import (
    drop_postgres_database,
    fresh_postgres_database,
    postgres_available,
    service_missing,
)

STEPS = 20_000


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_session(request, tmp_path) -> Iterator[Session]:
    """A session on a freshly migrated database of each dialect."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'tiles.db'}"
    elif not postgres_available():
        service_missing("PostgreSQL is not reachable at 127.0.0.1:5432")
    else:
        url = fresh_postgres_database()
    upgrade(url)
    engine = create_engine(url)
    with sessionmaker(engine)() as session:
        session.add(Job(id=1, name="long run", spec={}, status="running", latest_metrics={},
                        info=[]))
        session.flush()
        yield session
    engine.dispose()
    if request.param == "postgresql":
        drop_postgres_database(url)


def rows(steps: range, seed: int, name: str = "train/loss") -> list[dict]:
    rng = random.Random(seed)
    return [{"job_id": 1, "name": name, "step": s, "value": rng.random(), "epoch": None}
            for s in steps]


def tiles(session: Session) -> list[tuple]:
    query = select(MetricTile.name, MetricTile.level, MetricTile.tile, MetricTile.points,
                   MetricTile.first_step, MetricTile.first_value, MetricTile.last_step,
                   MetricTile.last_value, MetricTile.min_step, MetricTile.min_value,
                   MetricTile.max_step, MetricTile.max_value)
    return [tuple(r) for r in session.execute(query.order_by(
        MetricTile.name, MetricTile.level, MetricTile.tile))]


def rebuilt(session: Session) -> list[tuple]:
    """The tiles recomputed from scratch over every point."""
    session.execute(delete(MetricTile))
    store.refresh_metric_tiles(session, 1, 0, STEPS)
    return tiles(session)


def assert_m4(session: Session, name: str, max_points: int = 2000) -> None:
    points = series.metric_points(session, 1, name, -1)
    got = series.metric_series(session, 1, max_points=max_points).series[name]
    kept = list(zip(got.steps, got.values, strict=True))
    assert len(kept) <= max_points and kept == sorted(kept) and set(kept) <= set(points)
    assert kept[0] == points[0] and kept[-1] == points[-1]
    assert min(got.values) == min(v for _, v in points)
    assert max(got.values) == max(v for _, v in points)


def test_tiles_stay_exact_through_batches_overwrites_and_deletes(db_session):
    for start in range(1, STEPS, 997):  # batches that straddle tile edges, like the reporter's
        store.upsert_metric_points(db_session, rows(range(start, min(start + 997, STEPS)),
                                                         start))
    store.upsert_metric_points(db_session, rows(range(1, 1000, 100), 1, "eval/loss"))
    written = tiles(db_session)
    assert written == rebuilt(db_session)

    low = min(series.metric_points(db_session, 1, "train/loss", -1), key=lambda p: p[1])
    store.upsert_metric_points(db_session, [{"job_id": 1, "name": "train/loss",
                                                  "step": low[0], "value": 5.0, "epoch": None}])
    db_session.execute(delete(MetricPoint).where(MetricPoint.step > 15_000))
    store.refresh_metric_tiles(db_session, 1, 15_001, STEPS)
    after = tiles(db_session)
    assert after == rebuilt(db_session)
    assert max(t[11] for t in after if t[0] == "train/loss") == 5.0
    assert max(t[6] for t in after) == 15_000


def test_chart_from_tiles_keeps_first_last_min_and_max(db_session):
    points = rows(range(STEPS), 3)
    points[1234]["value"], points[17_001]["value"] = -1.0, 2.0
    store.upsert_metric_points(db_session, points)
    store.upsert_metric_points(db_session, rows(range(500, STEPS, 500), 4, "eval/loss"))
    assert_m4(db_session, "train/loss")
    assert_m4(db_session, "train/loss", max_points=100)
    out = series.metric_series(db_session, 1, max_points=2000)
    assert out.series["eval/loss"].steps == list(range(500, STEPS, 500))  # short: whole
    tail = series.metric_series(db_session, 1, after_step=STEPS - 11).series["train/loss"]
    assert tail.steps == list(range(STEPS - 10, STEPS))


def test_migration_builds_tiles_for_points_stored_before(tmp_path):
    from alembic import command

    url = f"sqlite:///{tmp_path / 'old.db'}"
    command.upgrade(alembic_config(url), "0001")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO jobs (id, name, status, spec, created_at, "
                             "cancel_requested, global_step, latest_metrics, info, attempts) "
                             "VALUES (1, 'old', 'succeeded', '{}', CURRENT_TIMESTAMP, 0, 0, "
                             "'{}', '[]', 0)")
        conn.execute(MetricPoint.__table__.insert(), rows(range(STEPS), 5))
    upgrade(url)
    with sessionmaker(engine)() as session:
        assert tiles(session) == rebuilt(session) != []
        assert_m4(session, "train/loss")
    engine.dispose()
