"""job tags and note: free-text labels and a note a user keeps on a job

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 08:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NULL (the rows before this migration) reads as no tags; new jobs get [].
    op.add_column('jobs', sa.Column('tags', sa.JSON(), nullable=True))
    op.add_column('jobs', sa.Column('note', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.drop_column('note')
        batch.drop_column('tags')
