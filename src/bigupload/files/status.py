"""A file's lifecycle and the transitions allowed between its states."""

from __future__ import annotations

from enum import StrEnum


class FileStatus(StrEnum):
    PENDING = "pending"
    UPLOADED = "uploaded"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"
    ABORTED = "aborted"


#: Every transition the service itself may make.
TRANSITIONS: dict[FileStatus, frozenset[FileStatus]] = {
    FileStatus.PENDING: frozenset(
        {FileStatus.UPLOADED, FileStatus.FAILED, FileStatus.EXPIRED, FileStatus.ABORTED}
    ),
    # ``expired`` from a whole file: only the sweeper, for files the application never
    # confirmed within ``confirm_within_seconds``.
    FileStatus.UPLOADED: frozenset({FileStatus.PROCESSING, FileStatus.FAILED, FileStatus.EXPIRED}),
    FileStatus.PROCESSING: frozenset({FileStatus.COMPLETED, FileStatus.FAILED, FileStatus.EXPIRED}),
    FileStatus.COMPLETED: frozenset({FileStatus.EXPIRED}),
    FileStatus.FAILED: frozenset(),
    FileStatus.EXPIRED: frozenset(),
    FileStatus.ABORTED: frozenset(),
}

#: The transitions a client may ask for through ``PUT /files/{id}/status``. Reaching
#: ``uploaded`` needs the store's confirmation, so it goes through ``complete`` instead; only
#: the sweeper makes a file ``expired``.
CLIENT_TRANSITIONS: dict[FileStatus, frozenset[FileStatus]] = {
    FileStatus.PENDING: frozenset({FileStatus.FAILED}),
    FileStatus.UPLOADED: frozenset({FileStatus.PROCESSING, FileStatus.FAILED}),
    FileStatus.PROCESSING: frozenset({FileStatus.COMPLETED, FileStatus.FAILED}),
}

#: States in which the stored object is whole and may be downloaded.
READABLE = frozenset({FileStatus.UPLOADED, FileStatus.PROCESSING, FileStatus.COMPLETED})

#: What the sweeper may expire: uploads never finished, and whole files never confirmed.
EXPIRABLE = frozenset({FileStatus.PENDING}) | READABLE


def can_transition(current: FileStatus, target: FileStatus) -> bool:
    return target in TRANSITIONS[current]


def client_can_transition(current: FileStatus, target: FileStatus) -> bool:
    return target in CLIENT_TRANSITIONS.get(current, frozenset())
