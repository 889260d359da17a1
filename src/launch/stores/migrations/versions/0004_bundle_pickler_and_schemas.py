"""bundles record the cloudpickle and Python versions that pickled them, and optional request/response schemas

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("bundles") as batch_op:
        batch_op.add_column(sa.Column("cloudpickle_version", sa.String(64), nullable=True))
        batch_op.add_column(sa.Column("python_version", sa.String(16), nullable=True))
        batch_op.add_column(sa.Column("request_schema", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("response_schema", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("bundles") as batch_op:
        for column in ("response_schema", "request_schema", "python_version", "cloudpickle_version"):
            batch_op.drop_column(column)
