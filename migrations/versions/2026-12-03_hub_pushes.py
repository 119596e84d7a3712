"""hub pushes: a checkpoint pushed to the Hugging Face Hub, its progress and outcome

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 09:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'hub_pushes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('job_id', sa.Integer(), nullable=False),
        sa.Column('checkpoint', sa.String(length=200), nullable=False),
        sa.Column('repo_id', sa.String(length=200), nullable=False),
        sa.Column('private', sa.Boolean(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('stage', sa.String(length=32), nullable=False),
        sa.Column('request_id', sa.Integer(), nullable=True),
        sa.Column('files_total', sa.Integer(), nullable=True),
        sa.Column('bytes_total', sa.BigInteger(), nullable=True),
        sa.Column('files_done', sa.Integer(), nullable=False),
        sa.Column('bytes_done', sa.BigInteger(), nullable=False),
        sa.Column('url', sa.Text(), nullable=True),
        sa.Column('commit', sa.String(length=64), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('started_at', sa.DateTime(), nullable=True),
        sa.Column('finished_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_hub_pushes_job_id_jobs'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_hub_pushes')),
    )
    op.create_index(op.f('ix_hub_pushes_job_id'), 'hub_pushes', ['job_id'])


def downgrade() -> None:
    op.drop_index(op.f('ix_hub_pushes_job_id'), table_name='hub_pushes')
    op.drop_table('hub_pushes')
