"""Earlier revisions of this repository's ``src/``, to measure beside the working tree."""

from __future__ import annotations

import subprocess
import tarfile
from io import BytesIO
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent


def export(rev: str, into: Path) -> Path:
    """``src/`` of revision ``rev`` of this repository, unpacked under ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(REPOSITORY), "archive", "--format=tar", rev, "src"],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into
