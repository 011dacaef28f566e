"""Alembic environment: runs on a connection handed in by :mod:`bigupload.migrate`."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from bigupload.auth import models as _auth_models  # noqa: F401  (registers tables)
from bigupload.db import Base
from bigupload.files import models as _file_models  # noqa: F401  (registers tables)
from bigupload.jobs import models as _job_models  # noqa: F401  (registers tables)

target_metadata = Base.metadata


def run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `bigupload db upgrade`")
run_on(connection)
