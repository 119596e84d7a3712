"""sweeps and early stopping: a sweeps table, each job's sweep and point, a stopped-early record

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 08:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'sweeps',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('base', sa.JSON(), nullable=False),
        sa.Column('grid', sa.JSON(), nullable=False),
        sa.Column('ranges', sa.JSON(), nullable=True),
        sa.Column('random', sa.Integer(), nullable=True),
        sa.Column('seed', sa.BigInteger(), nullable=True),
        sa.Column('metric', sa.String(length=100), nullable=False),
        sa.Column('mode', sa.String(length=3), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_sweeps')),
    )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sweep_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('sweep_values', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('stopped_early', sa.JSON(), nullable=True))
        batch_op.create_index(batch_op.f('ix_jobs_sweep_id'), ['sweep_id'])
        batch_op.create_foreign_key(batch_op.f('fk_jobs_sweep_id_sweeps'), 'sweeps',
                                    ['sweep_id'], ['id'], ondelete='SET NULL')


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_jobs_sweep_id_sweeps'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_jobs_sweep_id'))
        batch_op.drop_column('stopped_early')
        batch_op.drop_column('sweep_values')
        batch_op.drop_column('sweep_id')
    op.drop_table('sweeps')
