"""worker requests: what the web asks of the inference worker, and its answer

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 08:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'worker_requests',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('payload', sa.JSON(), nullable=False),
        sa.Column('result', sa.JSON(), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('started_at', sa.DateTime(), nullable=True),
        sa.Column('finished_at', sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_worker_requests')),
    )
    op.create_index(op.f('ix_worker_requests_status'), 'worker_requests', ['status'])
    op.create_index(op.f('ix_worker_requests_created_at'), 'worker_requests', ['created_at'])


def downgrade() -> None:
    op.drop_index(op.f('ix_worker_requests_created_at'), table_name='worker_requests')
    op.drop_index(op.f('ix_worker_requests_status'), table_name='worker_requests')
    op.drop_table('worker_requests')
