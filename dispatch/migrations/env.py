"""Alembic environment: runs on a connection handed in by dispatch.db (online mode only)."""

from alembic import context

from dispatch import complaint_models, hazard_models, inspection_models  # noqa: F401  (register their tables)
from dispatch.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `firelink db upgrade` (dispatch.db.Database.upgrade)")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
