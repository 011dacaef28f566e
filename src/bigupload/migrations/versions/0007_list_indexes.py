"""indexes for every list of an owner's files, the sweeper's oldest pending, and no duplicate

Each filter of ``GET /files`` (status, content type, both) gets an index of the owner, the
filtered columns and the order (``created_at, id``), so a page is a range read from its end;
``files.status`` alone becomes ``status, created_at, id`` (the sweeper's "pending since before
X", oldest first); ``file_events.owner`` alone goes, as ``owner, id`` already begins with it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIST_INDEXES = {
    "ix_files_owner_status_created": ["owner", "status", "created_at", "id"],
    "ix_files_owner_type_created": ["owner", "content_type", "created_at", "id"],
    "ix_files_owner_status_type_created": ["owner", "status", "content_type", "created_at", "id"],
    "ix_files_status_created": ["status", "created_at", "id"],
}


def upgrade() -> None:
    # Plain CREATE INDEX, not a batch (which would copy the whole table on SQLite).
    for name, columns in LIST_INDEXES.items():
        op.create_index(name, "files", columns)
    op.drop_index("ix_files_status", table_name="files")
    op.drop_index("ix_file_events_owner", table_name="file_events")


def downgrade() -> None:
    op.create_index("ix_file_events_owner", "file_events", ["owner"])
    op.create_index("ix_files_status", "files", ["status"])
    for name in reversed(LIST_INDEXES):
        op.drop_index(name, table_name="files")
