"""task predictions: a JSON column for each task's own prediction fields, a regression error

The classification columns become nullable (other tasks leave them empty); text-classification
rows keep filling them, so the confusion matrix reads them as before.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 20:40:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RELAXED = {"inputs": sa.JSON(), "prediction": sa.String(length=200),
           "confidence": sa.Float(), "probabilities": sa.JSON()}


def upgrade() -> None:
    with op.batch_alter_table('predictions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('fields', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('error', sa.Float(), nullable=True))
        for name, kind in RELAXED.items():
            batch_op.alter_column(name, existing_type=kind, nullable=True)


def downgrade() -> None:
    # Rows of the other tasks have no classification columns to keep.
    op.execute("DELETE FROM predictions WHERE fields IS NOT NULL")
    with op.batch_alter_table('predictions', schema=None) as batch_op:
        for name, kind in RELAXED.items():
            batch_op.alter_column(name, existing_type=kind, nullable=False)
        batch_op.drop_column('error')
        batch_op.drop_column('fields')
