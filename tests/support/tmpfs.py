"""A small real file system that fills up: a tmpfs mounted for one test (the suite runs as root)."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

MiB = 1024 * 1024


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str = "8m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` (made), unmounted afterwards; the test is skipped,
    saying why, only if this process may not mount one."""
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"the disk-full tests need a small tmpfs, and mount failed: {mounted.stderr}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True, capture_output=True)


def fill(path: Path, *, leave: int = 0) -> int:
    """Write ``path`` until its file system has at most ``leave`` bytes free (``0``: until a
    write fails with ENOSPC); answer the bytes written."""
    written = 0
    chunk = b"\0" * (64 * 1024)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        while not leave or free(path.parent) > leave:
            try:
                count = os.write(fd, chunk if not leave else chunk[: free(path.parent) - leave])
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
            written += count
    finally:
        os.close(fd)
    return written


def free(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize
