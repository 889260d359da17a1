"""task lifecycle: priority, queue TTL, idempotency, cancel, callbacks (outbox columns), tombstones

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('priority', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('expires_at', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('timeout_seconds', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('idempotency_key', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('request_digest', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('callback', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('callback_state', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('callback_attempts', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('callback_next_at', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('callback_error', sa.Text(), nullable=True))
        batch_op.create_index('ix_tasks_owner_idempotency', ['owner', 'idempotency_key'], unique=True)
        batch_op.create_index('ix_tasks_callback_due', ['callback_state', 'callback_next_at'], unique=False)
        batch_op.create_index('ix_tasks_state_finished', ['state', 'finished_at'], unique=False)
        batch_op.create_index('ix_tasks_expires_at', ['expires_at'], unique=False)
    op.create_table('task_tombstones',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('owner', sa.String(length=128), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('deleted_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('task_tombstones', schema=None) as batch_op:
        batch_op.create_index('ix_task_tombstones_deleted_at', ['deleted_at'], unique=False)


def downgrade() -> None:
    op.drop_table('task_tombstones')
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_tasks_expires_at')
        batch_op.drop_index('ix_tasks_state_finished')
        batch_op.drop_index('ix_tasks_callback_due')
        batch_op.drop_index('ix_tasks_owner_idempotency')
        for column in ('callback_error', 'callback_next_at', 'callback_attempts', 'callback_state', 'callback',
                       'request_digest', 'idempotency_key', 'timeout_seconds', 'expires_at', 'priority'):
            batch_op.drop_column(column)
