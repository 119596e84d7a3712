"""gpu resources: which devices a job's attempt trains on, and each worker's GPUs

jobs.devices ("cuda:0,1", "cpu x2"), jobs.processes and jobs.effective_batch_size are written
by the worker when an attempt starts (worker/distributed.py); workers is the inventory each
worker advertises with a heartbeat (worker/inventory.py), read by the 422 for impossible
resource requests and the GPUs page.

Revision ID: 0009_gpus
Revises: 0008
Create Date: 2026-12-03 08:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009_gpus'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('jobs', sa.Column('devices', sa.String(length=200), nullable=True))
    op.add_column('jobs', sa.Column('processes', sa.Integer(), nullable=True))
    op.add_column('jobs', sa.Column('effective_batch_size', sa.Integer(), nullable=True))
    op.create_table(
        'workers',
        sa.Column('id', sa.String(length=200), nullable=False),
        sa.Column('gpus', sa.JSON(), nullable=False),
        sa.Column('ddp_cpu', sa.Boolean(), nullable=False),
        sa.Column('gpu_sharing', sa.Boolean(), nullable=False),
        sa.Column('heartbeat_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_workers')),
    )
    op.create_index(op.f('ix_workers_heartbeat_at'), 'workers', ['heartbeat_at'])


def downgrade() -> None:
    op.drop_index(op.f('ix_workers_heartbeat_at'), table_name='workers')
    op.drop_table('workers')
    op.drop_column('jobs', 'effective_batch_size')
    op.drop_column('jobs', 'processes')
    op.drop_column('jobs', 'devices')
