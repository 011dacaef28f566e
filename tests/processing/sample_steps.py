"""Processing steps the tests configure by dotted path, as a deployment would its own."""

from __future__ import annotations

from typing import Any

from bigupload.processing.steps import ProcessingFailed, StepContext


async def fingerprint(ctx: StepContext) -> dict[str, Any]:
    """An async step: reads the object's first bytes itself."""
    head = await ctx.read_range(0, 8)
    return {
        "head": head.hex(),
        "file_id": str(ctx.file.id),
        "status": ctx.file.status.value,
        "detected": ctx.detected_content_type,
        "attempt": ctx.attempt,
        "saw": sorted(ctx.results),
    }


def tail(ctx: StepContext) -> dict[str, Any]:
    """A plain step, run in a worker thread: reads the object's last bytes."""
    size = ctx.file.stored_size or 0
    return {"tail": ctx.read_range_blocking(max(0, size - 4), 4).hex()}


async def nothing(ctx: StepContext) -> None:
    """A step with nothing to record."""
    return None


async def reject(ctx: StepContext) -> dict[str, Any]:
    raise ProcessingFailed("virus_found: Eicar-Test-Signature")


async def flaky(ctx: StepContext) -> dict[str, Any]:
    """Fails on the first attempt only, as a scanner that was briefly busy."""
    if ctx.attempt == 1:
        raise ConnectionError("the scanner is busy")
    return {"attempt": ctx.attempt}


async def broken(ctx: StepContext) -> dict[str, Any]:
    raise RuntimeError("the scanner is down")


def not_a_dict(ctx: StepContext) -> Any:
    return ["a", "list"]


NOT_CALLABLE = 42


async def detected(ctx: StepContext) -> None:
    """Named like bigupload's own results: refused at start."""
