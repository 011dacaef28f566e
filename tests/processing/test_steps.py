"""Loading configured processing steps: once, when the job kind is built, with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from bigupload.config import ConfigError
from bigupload.processing.job import PROCESS, process_kind
from bigupload.processing.steps import load_steps
from tests.conftest import make_settings
from tests.processing import sample_steps

STEPS = "tests.processing.sample_steps"


def test_both_spellings_of_a_dotted_path_load_the_function() -> None:
    steps = load_steps((f"{STEPS}:fingerprint", f"{STEPS}.tail"))
    assert [(s.name, s.function, s.is_async) for s in steps] == [
        ("fingerprint", sample_steps.fingerprint, True),
        ("tail", sample_steps.tail, False),
    ]


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("tests.processing.no_such_module:step", "cannot be imported: ModuleNotFoundError"),
        (f"{STEPS}:no_such_step", "names nothing"),
        (f"{STEPS}:NOT_CALLABLE", "is not a function"),
        (f"{STEPS}:detected", "which bigupload's results use"),
    ],
)
def test_a_step_that_cannot_be_loaded_is_a_config_error(path: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_steps((path,))
    message = str(caught.value)
    assert message.startswith(f"invalid configuration: BIGUPLOAD_PROCESSING_STEPS: {path!r}")
    assert problem in message


def test_two_steps_of_one_name_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="same name"):
        load_steps((f"{STEPS}:tail", f"{STEPS}.tail"))


def test_the_job_kind_loads_its_steps_when_built(tmp_path: Path) -> None:
    good = make_settings(
        tmp_path, "sqlite+aiosqlite:///unused.db", processing_steps=f"{STEPS}.tail"
    )
    kind = process_kind(good)
    assert (kind.name, kind.give_up is not None) == (PROCESS, True)
    bad = make_settings(tmp_path, "sqlite+aiosqlite:///unused.db", processing_steps="nowhere:x")
    with pytest.raises(ConfigError, match="'nowhere:x' cannot be imported"):
        process_kind(bad)
