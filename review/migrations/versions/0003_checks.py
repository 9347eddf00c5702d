"""Sentiment checks: the checks table, the drafts' confidence, and an outbox for checks' records too.

Revision ID: 0003_checks
Revises: 0002_variant
Create Date: 2026-11-29
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0003_checks'
down_revision: str | Sequence[str] | None = '0002_variant'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# 0001 left the outbox's foreign key unnamed: PostgreSQL named it so, and SQLite's batch mode finds it by this
# convention when it copies the table.
_FK_NAMES = {"postgresql": "outbox_chat_id_fkey"}
_SQLITE_FK = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('checks',
    sa.Column('chat_id', sa.String(length=256), nullable=False),
    sa.Column('user_id', sa.String(length=256), nullable=False),
    sa.Column('chat_message', sa.Text(), nullable=False),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('sentiment', sa.Integer(), nullable=False),
    sa.Column('confidence', sa.Float(), nullable=True),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('model_id', sa.String(length=256), nullable=False),
    sa.Column('prompt_version', sa.String(length=128), nullable=False),
    sa.Column('processed_at', sa.DateTime(), nullable=False),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.Column('message_id', sa.String(length=128), nullable=True),
    sa.Column('verdict', sa.Integer(), nullable=True),
    sa.Column('reviewer', sa.String(length=256), nullable=True),
    sa.Column('decided_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('chat_id')
    )
    with op.batch_alter_table('checks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_checks_decided_at'), ['decided_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_checks_processed_at'), ['processed_at'], unique=False)

    with op.batch_alter_table('drafts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('confidence', sa.Float(), nullable=True))

    # A check's record (its corrected chat, sent back to the pipeline) has no decision row to point to.
    dialect = op.get_bind().dialect.name
    with op.batch_alter_table('outbox', schema=None, naming_convention=_SQLITE_FK) as batch_op:
        batch_op.drop_constraint(_FK_NAMES.get(dialect, 'fk_outbox_chat_id_decisions'), type_='foreignkey')


def downgrade() -> None:
    """Downgrade schema."""
    # The checks' records go with the checks: the foreign key takes decisions' chats only.
    op.execute("DELETE FROM outbox WHERE chat_id NOT IN (SELECT chat_id FROM decisions)")
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_foreign_key('outbox_chat_id_fkey', 'decisions', ['chat_id'], ['chat_id'])

    with op.batch_alter_table('drafts', schema=None) as batch_op:
        batch_op.drop_column('confidence')

    with op.batch_alter_table('checks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_checks_processed_at'))
        batch_op.drop_index(batch_op.f('ix_checks_decided_at'))

    op.drop_table('checks')
