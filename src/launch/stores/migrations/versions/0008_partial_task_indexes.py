"""tasks: partial indexes, so that a row enters an index only when the query it serves can want it

A queued task was written into all seven of the table's B-trees (the sweeps' indexes held it under NULL keys);
now an insert touches three and an ending without a callback no longer touches the callback outbox's.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

# name, columns, unique, the rows it holds
_PARTIAL = [
    ("ix_tasks_state_lease", ["state", "lease_expires_at"], False, "lease_expires_at IS NOT NULL"),
    ("ix_tasks_owner_idempotency", ["owner", "idempotency_key"], True, "idempotency_key IS NOT NULL"),
    ("ix_tasks_callback_due", ["callback_state", "callback_next_at"], False, "callback_next_at IS NOT NULL"),
    ("ix_tasks_state_finished", ["state", "finished_at"], False, "finished_at IS NOT NULL"),
    ("ix_tasks_expires_at", ["expires_at"], False, "expires_at IS NOT NULL"),
]


def upgrade() -> None:
    import sqlalchemy as sa

    # endings without a callback left callback_next_at set: clear it so those rows leave the outbox's index
    op.execute(sa.text("UPDATE tasks SET callback_next_at = NULL WHERE callback IS NULL"))
    for name, columns, unique, where in _PARTIAL:
        op.drop_index(name, table_name="tasks")
        op.create_index(name, "tasks", columns, unique=unique, sqlite_where=sa.text(where),
                        postgresql_where=sa.text(where))


def downgrade() -> None:
    for name, columns, unique, _ in _PARTIAL:
        op.drop_index(name, table_name="tasks")
        op.create_index(name, "tasks", columns, unique=unique)
