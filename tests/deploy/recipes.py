"""What the Dockerfile and compose.yaml say a container runs, read from the files themselves.

The image cannot be built on these machines (no Docker daemon, no base images), so the tests
run the same commands, with the same environment, as processes here: :func:`image` gives the
Dockerfile's ENV, ENTRYPOINT, CMD and HEALTHCHECK; :func:`compose` the compose file with its
``${...}`` interpolated from ``.env.example``, as ``docker compose`` does from ``.env``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE_FILE = ROOT / "compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
#: Where the image keeps bigupload's venv (``PATH`` names it); here, the one running the tests.
IMAGE_VENV_BIN = "/opt/bigupload/bin"
VENV_BIN = str(Path(sys.executable).parent)
#: What an operator puts in ``.env`` for the secrets ``.env.example`` leaves empty.
TEST_SECRETS = {
    "POSTGRES_PASSWORD": "test-postgres-password",
    "S3_SECRET_ACCESS_KEY": "test",
    "BIGUPLOAD_SECRET_KEY": "test-secret-" + "x" * 40,
}


@dataclass(frozen=True)
class Image:
    env: dict[str, str]
    entrypoint: list[str]
    cmd: list[str]
    healthcheck: list[str]  # the exec form after ``CMD``
    user: str
    volumes: list[str]


def _instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of the final stage, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    found: list[tuple[str, str]] = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            found = []  # a new stage
        found.append((word.upper(), rest.strip()))
    return found


def _env_pairs(arguments: str, env: dict[str, str]) -> None:
    for pair in shlex.split(arguments):
        name, _, value = pair.partition("=")
        env[name] = re.sub(r"\$(\w+)|\$\{(\w+)\}", lambda m: env.get(m[1] or m[2], ""), value)


#: The PATH the python base image sets, which the Dockerfile's ``PATH=...:$PATH`` extends.
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def image() -> Image:
    env: dict[str, str] = {"PATH": BASE_PATH}
    entrypoint: list[str] = []
    cmd: list[str] = []
    healthcheck: list[str] = []
    user = ""
    volumes: list[str] = []
    for word, arguments in _instructions(DOCKERFILE.read_text()):
        if word == "ENV":
            _env_pairs(arguments, env)
        elif word == "ENTRYPOINT":
            entrypoint = json.loads(arguments)
        elif word == "CMD":
            cmd = json.loads(arguments)
        elif word == "HEALTHCHECK":
            healthcheck = json.loads(arguments.split(" CMD ", 1)[1])
        elif word == "USER":
            user = arguments
        elif word == "VOLUME":
            volumes = json.loads(arguments)
    return Image(env, entrypoint, cmd, healthcheck, user, volumes)


def example_env() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


_INTERPOLATION = re.compile(r"\$\{(\w+)(?::?([-?])([^}]*))?\}")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's ``${NAME}``, ``${NAME:-default}`` and ``${NAME:?error}`` (``$$`` is a ``$``)."""
    if isinstance(value, dict):
        return {interpolate(k, env): interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        name, kind, rest = match[1], match[2], match[3]
        if env.get(name):
            return env[name]
        if kind == "-":
            return rest
        if kind == "?":
            raise KeyError(f"{name}: {rest}")
        return ""

    return _INTERPOLATION.sub(one, value.replace("$$", "\0")).replace("\0", "$")


def compose_raw() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


def compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    """The compose file, interpolated (from ``.env.example`` with :data:`TEST_SECRETS`), with
    each service's YAML merge keys resolved."""
    return dict(interpolate(compose_raw(), example_env() | TEST_SECRETS if env is None else env))


def service_argv(service: dict[str, Any], img: Image) -> list[str]:
    """What a service's container runs: its entrypoint (or the image's) and its command."""
    entrypoint = service.get("entrypoint", img.entrypoint)
    command = service.get("command", img.cmd if "entrypoint" not in service else [])
    return [*entrypoint, *command]


def local_argv(argv: list[str]) -> list[str]:
    """The container's argv as a process here: tini from Debian, bigupload from this venv."""
    tini = shutil.which("tini") or "/usr/bin/tini"
    return [tini if arg == "/usr/bin/tini" else arg for arg in argv]


def process_env(container_env: dict[str, str], **overrides: str) -> dict[str, str]:
    """The container's environment here: this machine's PATH with this venv first (the image's
    venv is not here), nothing of ours that bigupload reads, then ``overrides``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("BIGUPLOAD_") and k not in ("FORCE_COLOR", "COLUMNS")
    }
    env.update(container_env)
    path = env.get("PATH", "").replace(IMAGE_VENV_BIN, VENV_BIN)
    env["PATH"] = path if VENV_BIN in path else f"{VENV_BIN}:{path}"
    env["TINI_SUBREAPER"] = "1"  # tini is not PID 1 here: it reaps as a subreaper instead
    env.update(overrides)
    return env


def healthcheck(img: Image, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the image's HEALTHCHECK command as Docker would, in the container's environment."""
    argv = [sys.executable if arg == "python" else arg for arg in img.healthcheck]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30, check=False)
