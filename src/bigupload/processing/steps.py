"""Processing steps of your own, run for every landed file after bigupload's own checks.

Configure them with ``BIGUPLOAD_PROCESSING_STEPS``, a comma-separated list of dotted paths
(``mypackage.scan:virus_scan`` or ``mypackage.scan.virus_scan``); they are imported once, when
the job kind is built, and run in the order given. A step is a function of a
:class:`StepContext`::

    async def virus_scan(ctx: StepContext) -> dict[str, Any] | None:
        head = await ctx.read_range(0, 1024)
        ...
        return {"clean": True}          # stored under results["virus_scan"]

A plain (``def``) function runs in a worker thread; it reads bytes with
:meth:`StepContext.read_range_blocking`. What a step returns (a JSON-serialisable dict, or
``None``) is stored in the file's ``results`` under the step's name (the function's name).

Failing:

- raise :class:`ProcessingFailed` with a reason: the file fails with that reason, for good;
- raise anything else: the job is tried again later, with backoff, and when its attempts run out
  the file fails with ``processing step <name> failed: <error>``.

**Steps must be idempotent.** A job runs at least once: after a crash, a lost lease or another
step's transient failure, every step runs again from the start for the same file. A step that
acts on the world (copies the object, calls a service) must make its second run harmless, for
instance by keying what it writes on ``ctx.file.id``. ``ctx.attempt`` says which attempt runs.
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread

from bigupload.config import ConfigError, Settings
from bigupload.files.schemas import FileOut
from bigupload.storage.base import Storage

#: Names bigupload's own results use in ``results``.
RESERVED_NAMES = frozenset({"detected"})


class ProcessingFailed(Exception):  # a verdict about the file, not a bug
    """The file is not acceptable: it fails with ``reason``, and is not tried again."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class StepContext:
    """What a step is given about the file it processes."""

    #: The file as it was when processing began (status ``processing``).
    file: FileOut
    #: The type found in the object's first bytes (``None``: of no known type).
    detected_content_type: str | None
    storage: Storage
    settings: Settings
    #: 1 on the first attempt at the job, 2 on the next...
    attempt: int
    #: What bigupload found and what earlier steps returned, by name.
    results: Mapping[str, Any] = field(default_factory=dict)

    async def read_range(self, start: int, length: int) -> bytes:
        """At most ``length`` bytes of the stored object from offset ``start``."""
        return await self.storage.read_range(self.file.key, start, length)

    def read_range_blocking(self, start: int, length: int) -> bytes:
        """:meth:`read_range` for a plain (``def``) step, which runs in a worker thread."""
        return anyio.from_thread.run(self.read_range, start, length)


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    path: str
    function: Callable[[StepContext], Any]

    @property
    def is_async(self) -> bool:
        function = self.function
        return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
            getattr(function, "__call__", None)  # noqa: B004 (an object with async __call__)
        )

    async def run(self, ctx: StepContext) -> dict[str, Any] | None:
        """Run the step; raises what it raises, or :class:`ProcessingFailed` for a bad answer."""
        if self.is_async:
            answer = await self.function(ctx)
        else:
            answer = await anyio.to_thread.run_sync(self.function, ctx)
            if inspect.isawaitable(answer):
                answer = await answer
        if answer is None:
            return None
        if not isinstance(answer, dict):
            raise ProcessingFailed(
                f"processing step {self.name} returned {type(answer).__name__}, not a dict"
            )
        try:
            json.dumps(answer)
        except (TypeError, ValueError) as exc:
            raise ProcessingFailed(
                f"processing step {self.name} returned what JSON cannot hold: {exc}"
            ) from None
        return answer


def _problem(path: str, message: str) -> ConfigError:
    return ConfigError(f"invalid configuration: BIGUPLOAD_PROCESSING_STEPS: {path!r} {message}")


def load_step(path: str) -> Step:
    """Import the step at ``path`` (``pkg.mod:func`` or ``pkg.mod.func``)."""
    module_name, _, attribute = path.partition(":") if ":" in path else path.rpartition(".")
    if not module_name or not attribute:
        raise _problem(path, "is not a dotted path such as 'mypackage.steps:scan'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # an import runs the module: anything may go wrong
        raise _problem(path, f"cannot be imported: {type(exc).__name__}: {exc}") from exc
    function = getattr(module, attribute, None)
    if function is None:
        raise _problem(path, f"names nothing: module {module_name!r} has no {attribute!r}")
    if not callable(function):
        raise _problem(path, "is not a function")
    name = getattr(function, "__name__", attribute)
    return Step(name=name, path=path, function=function)


def load_steps(paths: tuple[str, ...] | list[str]) -> tuple[Step, ...]:
    """Every configured step, imported once; a :class:`ConfigError` names the first problem."""
    steps: list[Step] = []
    for path in paths:
        step = load_step(path)
        if step.name in RESERVED_NAMES:
            raise _problem(path, f"is named {step.name!r}, which bigupload's results use")
        if any(step.name == other.name for other in steps):
            raise _problem(path, f"has the same name ({step.name!r}) as another step")
        steps.append(step)
    return tuple(steps)


def steps_from(settings: Settings) -> tuple[Step, ...]:
    return load_steps(settings.processing_steps)
