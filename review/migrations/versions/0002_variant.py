"""Drafts carry the apology variant that wrote them; those stored before variants existed are `default`.

Revision ID: 0002_variant
Revises: 0001
Create Date: 2026-11-29
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0002_variant'
down_revision: str | Sequence[str] | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('drafts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('variant', sa.String(length=64), server_default='default', nullable=False))
        batch_op.create_index(batch_op.f('ix_drafts_variant'), ['variant'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('drafts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_drafts_variant'))
        batch_op.drop_column('variant')
