"""an index of the files uploaded and never confirmed, for the sweeper

``ix_files_unconfirmed``: ``(status, created_at, id, uploaded_at)`` of the files whose
``confirmed_at`` is null and ``uploaded_at`` is not. The sweeper's "uploaded before X and never
confirmed" (``CONFIRM_WITHIN_SECONDS``) is a range of it per readable status, oldest first,
instead of a read of every file of that status (most of them confirmed) and a sort. A create
(a ``pending`` file, never uploaded) is not in it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "ix_files_unconfirmed"
WHERE = "confirmed_at IS NULL AND uploaded_at IS NOT NULL"


def upgrade() -> None:
    # Plain CREATE INDEX, not a batch (which would copy the whole table on SQLite).
    op.create_index(
        NAME,
        "files",
        ["status", "created_at", "id", "uploaded_at"],
        sqlite_where=sa.text(WHERE),
        postgresql_where=sa.text(WHERE),
    )


def downgrade() -> None:
    op.drop_index(NAME, table_name="files")
