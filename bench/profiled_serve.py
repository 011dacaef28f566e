"""``bigupload ARGS...`` under cProfile, the statistics written to ``PROFILE`` when it exits.

    python bench/profiled_serve.py PROFILE serve --port 8000

uvicorn re-raises the SIGTERM it shut down on once it has restored the handler it found; the
handler found here raises ``SystemExit``, which lets cProfile write its file (the default one
would end the process first).
"""

from __future__ import annotations

import cProfile
import signal
import sys
from types import FrameType


def _exit(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    profile, *args = sys.argv[1:]
    signal.signal(signal.SIGTERM, _exit)
    sys.argv = ["bigupload", *args]
    from bigupload.cli import main as bigupload

    profiler = cProfile.Profile()
    try:
        profiler.runcall(bigupload)
    except SystemExit:
        pass
    finally:
        profiler.dump_stats(profile)


if __name__ == "__main__":
    main()
