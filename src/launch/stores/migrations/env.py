"""Alembic environment: runs migrations on the connection handed over by ``launch.stores.database``."""

from alembic import context

from launch.stores.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # `alembic revision --autogenerate` from the command line
    import sqlalchemy as sa

    url = context.config.get_main_option("sqlalchemy.url") or "sqlite:///:memory:"
    connection = sa.create_engine(url).connect()
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
