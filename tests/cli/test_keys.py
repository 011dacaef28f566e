"""``bigupload keys``, run as a real process on a fresh data directory."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bigupload.app import create_app
from bigupload.auth import repository
from bigupload.config import load_settings
from bigupload.db import create_engine, create_sessionmaker
from tests.cli.helpers import (
    INVALID_CONFIGURATIONS,
    Result,
    bigupload,
    new_registry,
    run_many,
    without_registry_line,
)

KEY_RE = re.compile(r"^bu_[A-Za-z0-9_-]{43}$")
ANY_KEY_RE = re.compile(r"bu_[A-Za-z0-9_-]{43}")


def created_key(data_dir: Path, name: str, *args: str) -> str:
    result = bigupload(data_dir, "keys", "create", name, *args)
    assert result.code == 0, result.stderr
    assert len(result.out_lines) == 1, result.stdout
    key = result.out_lines[0]
    assert KEY_RE.match(key), key
    return key


def assert_one_line_error(
    result: Result, code: int, starts: str = "bigupload: ", *, registry_named: bool = False
) -> str:
    """The one error line; ``registry_named`` when it comes after the line naming the registry
    (the command got as far as opening it)."""
    assert result.code == code, (result.code, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = without_registry_line(result.stderr) if registry_named else result.err_lines
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(starts), result.stderr
    assert not ANY_KEY_RE.search(result.stdout + result.stderr)
    return lines[0]


async def call_api(data_dir: Path, key: str) -> httpx.Response:
    """``GET /api/v1/files`` with ``key`` on an in-process app over the same data directory."""
    app = create_app(load_settings(data_dir=data_dir, _env_file=None))
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            return await http.get("/api/v1/files", headers={"Authorization": f"Bearer {key}"})
    finally:
        await app.state.engine.dispose()


async def bystander_key(data_dir: Path, name: str) -> str:
    """A second key, made in-process (processes are slow), to see revocation is targeted."""
    settings = load_settings(data_dir=data_dir, _env_file=None)
    engine = create_engine(settings.effective_database_url)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            _, clear = await repository.create(session, name, name)
    finally:
        await engine.dispose()
    return clear


def database_bytes(data_dir: Path) -> bytes:
    files = sorted(data_dir.glob("bigupload.db*"))
    assert files, f"no database in {data_dir}"
    return b"".join(path.read_bytes() for path in files)


@dataclass
class Registry:
    data_dir: Path
    alice: Result
    bob: str


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """One data directory with ``alice`` (owner alice) and ``bob`` (owner team), made by the CLI."""
    data_dir = new_registry(tmp_path_factory.mktemp("keys") / "data")
    alice = bigupload(data_dir, "keys", "create", "alice")
    return Registry(data_dir, alice, created_key(data_dir, "bob", "--owner", "team"))


# -- create ---------------------------------------------------------------------------------------


def test_create_prints_the_key_alone_on_stdout(registry: Registry) -> None:
    assert registry.alice.code == 0, registry.alice.stderr
    assert registry.alice.stdout.endswith("\n")
    assert len(registry.alice.out_lines) == 1
    assert KEY_RE.match(registry.alice.out_lines[0]), registry.alice.stdout
    assert "Traceback" not in registry.alice.stderr


def test_two_keys_differ(registry: Registry) -> None:
    assert registry.alice.stdout.strip() != registry.bob


async def test_the_created_key_works_against_the_api(registry: Registry) -> None:
    for key in (registry.alice.stdout.strip(), registry.bob):
        response = await call_api(registry.data_dir, key)
        assert response.status_code == 200, response.text
        assert response.json()["items"] == []


async def test_a_key_that_was_not_created_is_refused(registry: Registry) -> None:
    forged = "bu_" + "A" * 43
    response = await call_api(registry.data_dir, forged)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_the_key_is_not_stored_in_clear(registry: Registry) -> None:
    stored = database_bytes(registry.data_dir)
    for key in (registry.alice.stdout.strip(), registry.bob):
        assert key.encode() not in stored
        assert key[3:].encode() not in stored
        # The row is there, by its digest: the search above looked in the right place.
        assert hashlib.sha256(key.encode()).hexdigest().encode() in stored


def test_creating_the_same_name_twice_fails(registry: Registry) -> None:
    again = bigupload(registry.data_dir, "keys", "create", "alice")
    line = assert_one_line_error(again, 1, registry_named=True)
    assert "alice" in line
    assert again.stdout == ""


INVALID_NAMES = {
    "space": ["--", "bad name"],
    "path": ["--", "../etc"],
    "leading-dash": ["--", "-x"],
    "too-long": ["--", "x" * 65],
    "owner-path": ["--owner", "o/../x", "--", "good"],
}


@pytest.fixture(scope="module")
def invalid_name_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Result]:
    """Every invalid name tried at once, each on its own data directory (processes are slow)."""
    root = tmp_path_factory.mktemp("names")
    return run_many(
        {
            case: (root / case / "data", ["keys", "create", *args], {})
            for case, args in INVALID_NAMES.items()
        }
    )


@pytest.mark.parametrize("case", INVALID_NAMES)
def test_invalid_names_fail_with_exit_2(invalid_name_results: dict[str, Result], case: str) -> None:
    result = invalid_name_results[case]
    line = assert_one_line_error(result, 2)
    assert "name" in line or "owner" in line
    assert result.stdout == ""


# -- list -----------------------------------------------------------------------------------------


def test_list_shows_names_owners_and_prefixes_never_keys(registry: Registry) -> None:
    result = bigupload(registry.data_dir, "keys", "list")
    assert result.code == 0, result.stderr
    rows = {
        line.split()[1]: line
        for line in result.out_lines
        if len(line.split()) > 1 and line.split()[1] in ("alice", "bob")
    }
    assert set(rows) == {"alice", "bob"}
    alice_key = registry.alice.stdout.strip()
    assert re.search(r"\balice\b.*\balice\b", rows["alice"])
    assert "team" in rows["bob"]
    assert alice_key[:10] in rows["alice"]
    assert registry.bob[:10] in rows["bob"]
    output = result.stdout + result.stderr
    for key in (alice_key, registry.bob):
        # Not the key, nor any run of its secret part beyond the displayed prefix.
        assert key not in output
        assert key[10:20] not in output
        assert key[-10:] not in output


# -- revoke ---------------------------------------------------------------------------------------


async def test_revoke_stops_the_key_at_once(tmp_path: Path) -> None:
    data_dir = new_registry(tmp_path / "data")
    alice = created_key(data_dir, "alice")
    bob = await bystander_key(data_dir, "bob")
    assert (await call_api(data_dir, alice)).status_code == 200

    revoked = bigupload(data_dir, "keys", "revoke", "alice")
    assert revoked.code == 0, revoked.stderr
    assert "Traceback" not in revoked.stderr

    refused = await call_api(data_dir, alice)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_api_key"
    assert (await call_api(data_dir, bob)).status_code == 200

    listing = bigupload(data_dir, "keys", "list")
    assert listing.code == 0, listing.stderr
    alice_row = next(line for line in listing.out_lines if " alice " in line)
    bob_row = next(line for line in listing.out_lines if " bob " in line)
    date = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}"
    assert len(re.findall(date, alice_row)) == 2  # created and revoked
    assert len(re.findall(date, bob_row)) == 1

    again = bigupload(data_dir, "keys", "revoke", "alice")
    assert "alice" in assert_one_line_error(again, 1, registry_named=True)


def test_revoking_an_unknown_name_fails(registry: Registry) -> None:
    result = bigupload(registry.data_dir, "keys", "revoke", "nobody")
    assert "nobody" in assert_one_line_error(result, 1, registry_named=True)


# -- configuration ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def invalid_config_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Result]:
    root = tmp_path_factory.mktemp("config")
    return run_many(
        {
            f"{variable}={value}": (root / str(i) / "data", ["keys", "list"], {variable: value})
            for i, (variable, value, _) in enumerate(INVALID_CONFIGURATIONS)
        }
    )


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    INVALID_CONFIGURATIONS,
    ids=[f"{c[0]}={c[1]}" for c in INVALID_CONFIGURATIONS],
)
def test_keys_list_refuses_an_invalid_configuration(
    invalid_config_results: dict[str, Result], variable: str, value: str, named: str
) -> None:
    result = invalid_config_results[f"{variable}={value}"]
    line = assert_one_line_error(result, 2, "bigupload: invalid configuration:")
    assert named in line
    assert result.stdout == ""
