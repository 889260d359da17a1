"""The database tables (SQLAlchemy Core). Alembic migrations in ``migrations/`` create exactly these."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("owner", sa.String(128), nullable=False, index=True),
    sa.Column("key_digest", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float, nullable=True),
    sa.Column("key_prefix", sa.String(16), nullable=True),  # the key's first characters, to name it in lists
    sa.Column("last_used_at", sa.Float, nullable=True),  # written at most once a minute per key
    sa.Column("admin", sa.Boolean, nullable=False, server_default=sa.false()),  # sees every owner's resources
)

bundles = sa.Table(
    "bundles",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("owner", sa.String(128), nullable=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("packaging_type", sa.String(32), nullable=False),
    sa.Column("location", sa.Text, nullable=False),
    sa.Column("object_key", sa.Text, nullable=True),
    sa.Column("metadata", sa.JSON, nullable=False),
    sa.Column("requirements", sa.JSON, nullable=False),
    sa.Column("env_params", sa.JSON, nullable=False),
    sa.Column("app_config", sa.JSON, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("cloudpickle_version", sa.String(64), nullable=True),
    sa.Column("python_version", sa.String(16), nullable=True),
    sa.Column("request_schema", sa.JSON, nullable=True),
    sa.Column("response_schema", sa.JSON, nullable=True),
    sa.UniqueConstraint("owner", "name", name="uq_bundles_owner_name"),
)

endpoints = sa.Table(
    "endpoints",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("owner", sa.String(128), nullable=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("endpoint_type", sa.String(16), nullable=False),
    # the bundle it is asked to serve, by id and by name: a record of it, not a claim on it (a bundle is
    # deletable once no live endpoint uses it; see ``domain.bundles``)
    sa.Column("bundle_id", sa.String(32), nullable=False),
    sa.Column("bundle_name", sa.String(128), nullable=False),
    sa.Column("settings", sa.JSON, nullable=False),
    # settings' max_workers again, as a plain column: the quota check sums it over an owner's endpoints
    sa.Column("max_workers", sa.Integer, nullable=False, server_default="0"),
    sa.Column("metadata", sa.JSON, nullable=False),
    sa.Column("labels", sa.JSON, nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("status_reason", sa.Text, nullable=True),
    sa.Column("generation", sa.Integer, nullable=False),
    # the generation that last became ready (its workers serve while a newer one rolls out or failed)
    sa.Column("serving_generation", sa.Integer, nullable=True),
    sa.Column("serving_bundle_id", sa.String(32), nullable=True),
    sa.Column("serving_bundle_name", sa.String(128), nullable=True),
    sa.Column("serving_settings", sa.JSON, nullable=True),
    sa.Column("failed_rollout", sa.JSON, nullable=True),  # {generation, bundle_name, reason, failed_at}
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.UniqueConstraint("owner", "name", name="uq_endpoints_owner_name"),
    sa.Index("ix_endpoints_owner_usage", "owner", "status", "max_workers", "id"),  # the quota sum: the index alone
)

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("owner", sa.String(128), nullable=False),
    sa.Column("endpoint_id", sa.String(32), nullable=False, index=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("request", sa.JSON, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("lease_expires_at", sa.Float, nullable=True),
    sa.Column("result", sa.Text, nullable=True),
    sa.Column("result_key", sa.Text, nullable=True),
    sa.Column("traceback", sa.Text, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float, nullable=True),
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
    sa.Column("expires_at", sa.Float, nullable=True),  # queue TTL: EXPIRED if no worker took it by then
    sa.Column("timeout_seconds", sa.Float, nullable=True),
    sa.Column("idempotency_key", sa.String(255), nullable=True),
    sa.Column("request_digest", sa.String(64), nullable=True),
    # the callback outbox lives on the task row: set in the same statement that stores the result
    sa.Column("callback", sa.JSON(none_as_null=True), nullable=True),
    sa.Column("callback_state", sa.String(16), nullable=True),
    sa.Column("callback_attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("callback_next_at", sa.Float, nullable=True),
    sa.Column("callback_error", sa.Text, nullable=True),
    # partial: a row is in an index only when the query it serves can want it (migration 0008)
    *(sa.Index(name, *columns, unique=unique, sqlite_where=sa.text(where), postgresql_where=sa.text(where))
      for name, columns, unique, where in (
          ("ix_tasks_state_lease", ("state", "lease_expires_at"), False, "lease_expires_at IS NOT NULL"),
          ("ix_tasks_owner_idempotency", ("owner", "idempotency_key"), True, "idempotency_key IS NOT NULL"),
          ("ix_tasks_callback_due", ("callback_state", "callback_next_at"), False, "callback_next_at IS NOT NULL"),
          ("ix_tasks_state_finished", ("state", "finished_at"), False, "finished_at IS NOT NULL"),
          ("ix_tasks_expires_at", ("expires_at",), False, "expires_at IS NOT NULL"),
      )),
)

task_tombstones = sa.Table(
    "task_tombstones",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("owner", sa.String(128), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("deleted_at", sa.Float, nullable=False, index=True),
)

batch_jobs = sa.Table(
    "batch_jobs",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("owner", sa.String(128), nullable=False, index=True),
    sa.Column("bundle_id", sa.String(32), nullable=False),  # a record of the bundle it ran, not a claim
    sa.Column("bundle_name", sa.String(128), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("input_key", sa.Text, nullable=False),
    sa.Column("serialization_format", sa.String(16), nullable=False),
    sa.Column("options", sa.JSON, nullable=False),
    sa.Column("labels", sa.JSON, nullable=False),
    sa.Column("total", sa.Integer, nullable=True),
    sa.Column("done", sa.Integer, nullable=False),
    sa.Column("failed", sa.Integer, nullable=False),
    sa.Column("result_key", sa.Text, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float, nullable=True),
    sa.Column("finished_at", sa.Float, nullable=True),
)

batch_items = sa.Table(
    "batch_items",
    metadata,
    sa.Column("job_id", sa.String(32), sa.ForeignKey("batch_jobs.id"), primary_key=True),
    sa.Column("item_id", sa.String(64), primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("request", sa.JSON, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("output", sa.Text, nullable=True),
    sa.Column("output_key", sa.Text, nullable=True),
    sa.Column("traceback", sa.Text, nullable=True),
)

# Several gateways on one database: the one control loop's lease, and the ready workers every gateway's sync
# path sends to (published by the control loop's holder).
control_lease = sa.Table(
    "control_lease",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(64), nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)

ready_workers = sa.Table(
    "ready_workers",
    metadata,
    sa.Column("worker_id", sa.String(64), primary_key=True),
    sa.Column("endpoint_id", sa.String(32), nullable=False, index=True),
    sa.Column("generation", sa.Integer, nullable=False),
    sa.Column("address", sa.Text, nullable=False),
    sa.Column("capacity", sa.Integer, nullable=False),
    sa.Column("holder", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)
