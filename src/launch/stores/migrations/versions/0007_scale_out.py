"""scale-out: the control loop's lease and the published ready workers

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('control_lease',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('holder', sa.String(length=64), nullable=False),
    sa.Column('expires_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('ready_workers',
    sa.Column('worker_id', sa.String(length=64), nullable=False),
    sa.Column('endpoint_id', sa.String(length=32), nullable=False),
    sa.Column('generation', sa.Integer(), nullable=False),
    sa.Column('address', sa.Text(), nullable=False),
    sa.Column('capacity', sa.Integer(), nullable=False),
    sa.Column('holder', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('worker_id')
    )
    with op.batch_alter_table('ready_workers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ready_workers_endpoint_id'), ['endpoint_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('ready_workers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ready_workers_endpoint_id'))
    op.drop_table('ready_workers')
    op.drop_table('control_lease')
