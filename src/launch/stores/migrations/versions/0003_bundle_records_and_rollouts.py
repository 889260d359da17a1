"""bundle names as records (no foreign keys), serving generation and failed rollouts of endpoints

Endpoints and batch jobs keep the name of their bundle instead of a foreign-key claim on it, so a bundle is
deletable once no live endpoint uses it. Endpoints remember the generation that serves (bundle and settings)
while a newer one rolls out, and the last failed rollout.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

# SQLite's foreign keys are unnamed: name them by convention so batch mode can drop them
_NAMING = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}


def _drop_bundle_fk(batch_op: object, table: str) -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    name = f"fk_{table}_bundle_id_bundles" if sqlite else f"{table}_bundle_id_fkey"
    batch_op.drop_constraint(name, type_="foreignkey")  # type: ignore[attr-defined]


def upgrade() -> None:
    for table in ("endpoints", "batch_jobs"):
        with op.batch_alter_table(table, naming_convention=_NAMING, recreate="auto") as batch_op:
            batch_op.add_column(sa.Column("bundle_name", sa.String(128), nullable=False, server_default=""))
            _drop_bundle_fk(batch_op, table)
        op.execute(f"UPDATE {table} SET bundle_name = "
                   f"(SELECT bundles.name FROM bundles WHERE bundles.id = {table}.bundle_id)")
    with op.batch_alter_table("endpoints") as batch_op:
        batch_op.add_column(sa.Column("serving_generation", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("serving_bundle_id", sa.String(32), nullable=True))
        batch_op.add_column(sa.Column("serving_bundle_name", sa.String(128), nullable=True))
        batch_op.add_column(sa.Column("serving_settings", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("failed_rollout", sa.JSON(), nullable=True))
    # endpoints that were READY serve their current generation
    op.execute("UPDATE endpoints SET serving_generation = generation, serving_bundle_id = bundle_id, "
               "serving_bundle_name = bundle_name, serving_settings = settings WHERE status = 'READY'")


def downgrade() -> None:
    with op.batch_alter_table("endpoints") as batch_op:
        for column in ("failed_rollout", "serving_settings", "serving_bundle_name", "serving_bundle_id",
                       "serving_generation", "bundle_name"):
            batch_op.drop_column(column)
        batch_op.create_foreign_key("fk_endpoints_bundle_id_bundles", "bundles", ["bundle_id"], ["id"])
    with op.batch_alter_table("batch_jobs") as batch_op:
        batch_op.drop_column("bundle_name")
        batch_op.create_foreign_key("fk_batch_jobs_bundle_id_bundles", "bundles", ["bundle_id"], ["id"])
