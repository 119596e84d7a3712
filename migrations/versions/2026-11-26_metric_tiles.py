"""metric tiles: per-series summaries the chart's downsampling reads instead of every point

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 09:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LEVELS = 5
COLUMNS = ("points, first_step, first_value, last_step, last_value, min_step, min_value, "
           "max_step, max_value")
# The same summaries app.jobs.store.refresh_metric_tiles writes, for the points already
# stored: level 0 from the points, each further level from the one below.
POINTS = ("SELECT job_id, name, step / 16 AS parent, 1 AS points, step AS first_step, "
          "value AS first_value, step AS last_step, value AS last_value, step AS min_step, "
          "value AS min_value, step AS max_step, value AS max_value FROM metric_points")
TILES = (f"SELECT job_id, name, tile / 16 AS parent, {COLUMNS} FROM metric_tiles "
         "WHERE level = {child}")
MERGE = (
    f"INSERT INTO metric_tiles (job_id, name, level, tile, {COLUMNS}) "
    "SELECT DISTINCT job_id, name, {level}, parent, SUM(points) OVER w, "
    "FIRST_VALUE(first_step) OVER (w ORDER BY first_step), "
    "FIRST_VALUE(first_value) OVER (w ORDER BY first_step), "
    "FIRST_VALUE(last_step) OVER (w ORDER BY last_step DESC), "
    "FIRST_VALUE(last_value) OVER (w ORDER BY last_step DESC), "
    "FIRST_VALUE(min_step) OVER (w ORDER BY min_value, min_step), "
    "FIRST_VALUE(min_value) OVER (w ORDER BY min_value, min_step), "
    "FIRST_VALUE(max_step) OVER (w ORDER BY max_value DESC, max_step), "
    "FIRST_VALUE(max_value) OVER (w ORDER BY max_value DESC, max_step) "
    "FROM ({children}) AS c WINDOW w AS (PARTITION BY job_id, name, parent)"
)


def upgrade() -> None:
    op.create_table('metric_tiles',
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('level', sa.Integer(), nullable=False),
    sa.Column('tile', sa.Integer(), nullable=False),
    sa.Column('points', sa.Integer(), nullable=False),
    sa.Column('first_step', sa.Integer(), nullable=False),
    sa.Column('first_value', sa.Float(), nullable=False),
    sa.Column('last_step', sa.Integer(), nullable=False),
    sa.Column('last_value', sa.Float(), nullable=False),
    sa.Column('min_step', sa.Integer(), nullable=False),
    sa.Column('min_value', sa.Float(), nullable=False),
    sa.Column('max_step', sa.Integer(), nullable=False),
    sa.Column('max_value', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_metric_tiles_job_id_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', 'name', 'level', 'tile', name=op.f('pk_metric_tiles'))
    )
    for level in range(LEVELS):
        children = POINTS if level == 0 else TILES.format(child=level - 1)
        op.execute(MERGE.format(level=level, children=children))


def downgrade() -> None:
    op.drop_table('metric_tiles')
