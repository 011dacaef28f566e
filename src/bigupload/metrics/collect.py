"""Where a scrape reads the metrics from: this process, or every process of a ``serve``.

``bigupload serve`` (the parent, before any worker starts) empties the directory the settings
name and sets ``PROMETHEUS_MULTIPROC_DIR`` to it; every process it starts inherits that and
writes its values into files of its own there (prometheus_client's multiprocess mode), and any
of them answers a scrape with the sum. Counters of a process that ended stay counted; the open
streams gauge counts live processes only (files of processes that are gone are dropped at
scrape time, as uvicorn's supervisor restarts workers without telling anyone).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from bigupload.config import Settings

ENV = "PROMETHEUS_MULTIPROC_DIR"


def metrics_dir(settings: Settings) -> Path:
    """``METRICS_DIR``, or one per port under the data directory: two servers sharing a data
    directory (replicas on one machine) never empty each other's."""
    return settings.metrics_dir or settings.data_dir / "metrics" / f"serve-{settings.port}"


def prepare_multiprocess(settings: Settings) -> Path:
    """Empty (or make) the directory and point this process and its children at it.

    Must run before :mod:`bigupload.metrics.catalog` is imported, once, in the process that
    starts the servers."""
    if "bigupload.metrics.catalog" in sys.modules and not _multiprocess_values():
        raise RuntimeError("the metrics were made before their directory was set")
    directory = metrics_dir(settings).resolve()
    if directory.exists():
        for entry in directory.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    directory.mkdir(parents=True, exist_ok=True)
    os.environ[ENV] = str(directory)
    return directory


def _multiprocess_values() -> bool:
    from prometheus_client import values

    return bool(getattr(values.ValueClass, "_multiprocess", False))


def multiprocess_directory() -> str | None:
    return os.environ.get(ENV) if _multiprocess_values() else None


def drop_dead_processes(directory: str) -> None:
    """Forget the live gauges of processes that are gone (their counters stay)."""
    from prometheus_client import multiprocess

    for path in Path(directory).glob("gauge_live*_*.db"):
        pid = path.stem.rsplit("_", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            multiprocess.mark_process_dead(int(pid), directory)  # type: ignore[no-untyped-call]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
