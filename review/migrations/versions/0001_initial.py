"""The first schema: drafts, decisions, the outbox and unreadable messages.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0001'
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('drafts',
    sa.Column('chat_id', sa.String(length=256), nullable=False),
    sa.Column('user_id', sa.String(length=256), nullable=False),
    sa.Column('chat_message', sa.Text(), nullable=False),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('draft_reply', sa.Text(), nullable=False),
    sa.Column('model_id', sa.String(length=256), nullable=False),
    sa.Column('triage_prompt_version', sa.String(length=128), nullable=False),
    sa.Column('apology_prompt_version', sa.String(length=128), nullable=False),
    sa.Column('processed_at', sa.DateTime(), nullable=False),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.Column('message_id', sa.String(length=128), nullable=True),
    sa.Column('claimed_by', sa.String(length=256), nullable=True),
    sa.Column('claimed_until', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('chat_id')
    )
    with op.batch_alter_table('drafts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_drafts_model_id'), ['model_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_drafts_processed_at'), ['processed_at'], unique=False)

    op.create_table('unreadable_messages',
    sa.Column('message_id', sa.String(length=128), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('message_id')
    )
    op.create_table('decisions',
    sa.Column('chat_id', sa.String(length=256), nullable=False),
    sa.Column('decision', sa.String(length=16), nullable=False),
    sa.Column('final_text', sa.Text(), nullable=True),
    sa.Column('reason', sa.String(length=32), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('corrected_sentiment', sa.Integer(), nullable=True),
    sa.Column('reviewer', sa.String(length=256), nullable=False),
    sa.Column('decided_at', sa.DateTime(), nullable=False),
    sa.Column('seconds_waited', sa.Float(), nullable=False),
    sa.Column('edit_distance', sa.Integer(), nullable=True),
    sa.Column('normalized_edit_distance', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['chat_id'], ['drafts.chat_id'], ),
    sa.PrimaryKeyConstraint('chat_id')
    )
    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_decisions_decided_at'), ['decided_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_decisions_decision'), ['decision'], unique=False)

    op.create_table('outbox',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('chat_id', sa.String(length=256), nullable=False),
    sa.Column('destination', sa.String(length=16), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('sent_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['chat_id'], ['decisions.chat_id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('chat_id', 'destination')
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outbox_next_attempt_at'), ['next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_outbox_sent_at'), ['sent_at'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbox_sent_at'))
        batch_op.drop_index(batch_op.f('ix_outbox_next_attempt_at'))

    op.drop_table('outbox')
    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_decisions_decision'))
        batch_op.drop_index(batch_op.f('ix_decisions_decided_at'))

    op.drop_table('decisions')
    op.drop_table('unreadable_messages')
    with op.batch_alter_table('drafts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_drafts_processed_at'))
        batch_op.drop_index(batch_op.f('ix_drafts_model_id'))

    op.drop_table('drafts')
