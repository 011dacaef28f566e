"""The Dockerfile passes hadolint; compose.yaml is valid Compose and wires the stack up."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.deploy import recipes

SECRETS = recipes.TEST_SECRETS
SCHEMA = Path(__file__).with_name("compose-spec.json")
HADOLINT = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or "hadolint"


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    done = subprocess.run(
        [HADOLINT, "--format", "json", "--failure-threshold", "warning", str(recipes.DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    findings = json.loads(done.stdout or "[]")
    assert [f for f in findings if f["level"] in ("error", "warning")] == []
    assert done.returncode == 0, done.stderr
    assert findings == []  # not even info or style


def test_the_image_runs_bigupload_under_tini_as_a_user_with_one_volume() -> None:
    image = recipes.image()
    assert image.entrypoint == ["/usr/bin/tini", "-e", "143", "--", "bigupload"]
    assert image.cmd == ["serve"]
    assert image.user == "10001:10001"
    assert image.volumes == ["/data"]
    assert image.env["BIGUPLOAD_DATA_DIR"] == "/data"
    assert (image.env["BIGUPLOAD_HOST"], image.env["BIGUPLOAD_PORT"]) == ("0.0.0.0", "8000")
    assert image.env["PATH"].startswith(recipes.IMAGE_VENV_BIN + ":")
    assert image.healthcheck[:2] == ["python", "-c"]
    text = recipes.DOCKERFILE.read_text()
    final = text[text.rindex("\nFROM ") :]
    for tool in ("gcc", "build-essential", "node", "npm", "curl"):
        assert tool not in final
    assert "COPY --from=builder /opt/bigupload /opt/bigupload" in final


def test_the_build_context_holds_only_what_the_wheel_needs() -> None:
    lines = (recipes.ROOT / ".dockerignore").read_text().splitlines()
    assert lines[1:5] == ["*", "!pyproject.toml", "!README.md", "!src/"]
    static = recipes.ROOT / "src/bigupload/web/static"
    assert (static / "index.html").is_file()  # the page is in the package: no Node.js


def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def test_compose_yaml_is_valid_against_the_compose_specification() -> None:
    errors = sorted(validator().iter_errors(recipes.compose()), key=lambda e: list(e.path))
    assert [f"{list(e.path)}: {e.message}" for e in errors] == []


def test_the_schema_catches_a_broken_compose_file() -> None:
    broken = recipes.compose()
    broken["services"]["worker"]["depends_on"]["postgres"]["condition"] = "service_ready"
    broken["services"]["proxy"]["ports"] = [{"target": "eighty"}]
    assert len(list(validator().iter_errors(broken))) >= 2


def test_compose_refuses_to_start_until_the_secrets_are_filled_in() -> None:
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD"):
        recipes.compose(recipes.example_env())
    values = recipes.example_env() | SECRETS
    del values["BIGUPLOAD_SECRET_KEY"]
    with pytest.raises(KeyError, match="BIGUPLOAD_SECRET_KEY"):
        recipes.compose(values)


def conditions(service: dict[str, Any]) -> dict[str, str]:
    return {name: dep["condition"] for name, dep in service.get("depends_on", {}).items()}


def test_the_stack_is_two_replicas_and_a_worker_behind_one_proxy() -> None:
    services = recipes.compose()["services"]
    assert set(services) == {
        "postgres",
        "seaweedfs",
        "redis",
        "storage-setup",
        "bigupload-1",
        "bigupload-2",
        "worker",
        "proxy",
    }
    image = recipes.image()
    assert recipes.service_argv(services["bigupload-1"], image)[-1:] == ["serve"]
    assert recipes.service_argv(services["bigupload-2"], image)[-1:] == ["serve"]
    assert recipes.service_argv(services["worker"], image)[-1:] == ["worker"]
    assert services["storage-setup"]["command"][0].endswith("&& exec bigupload storage setup")
    assert services["storage-setup"]["restart"] == "no"
    for name in ("bigupload-1", "bigupload-2", "worker"):
        assert conditions(services[name]) == {
            "postgres": "service_healthy",
            "redis": "service_healthy",
            "storage-setup": "service_completed_successfully",
        }
        env = services[name]["environment"]
        assert env["BIGUPLOAD_RATE_LIMIT_STORAGE"] == "redis://redis:6379"
        assert env["BIGUPLOAD_DATABASE_URL"].endswith("@postgres:5432/bigupload")
        assert env["BIGUPLOAD_RUN_JOBS"] == "false"
    assert services["worker"]["healthcheck"] == {"disable": True}
    for name in ("bigupload-1", "bigupload-2", "worker"):
        assert services[name]["stop_grace_period"] == "30s"
    for name in ("postgres", "seaweedfs", "redis"):
        assert services[name]["healthcheck"]["test"][0] == "CMD"
    assert services["proxy"]["healthcheck"]["test"] == [
        "CMD-SHELL",
        "wget --quiet --output-document=/dev/null http://127.0.0.1:${SITE_PORT}/.proxy/health",
    ]
    assert conditions(services["storage-setup"]) == {
        "postgres": "service_healthy",
        "proxy": "service_healthy",
    }
    published = [s for s in services.values() if s.get("ports")]
    assert published == [services["proxy"]]
    assert services["proxy"]["ports"] == ["8080:8080"]
    assert services["proxy"]["networks"]["backend"]["aliases"] == ["bigupload.localhost"]


def test_the_proxy_sends_the_bucket_to_the_store_and_the_rest_to_both_replicas() -> None:
    caddyfile = (recipes.ROOT / "deploy/caddy/Caddyfile").read_text()
    assert "reverse_proxy bigupload-1:8000 bigupload-2:8000" in caddyfile
    assert "health_uri /health/ready" in caddyfile
    assert "@bucket path /{$S3_BUCKET:bigupload} /{$S3_BUCKET:bigupload}/*" in caddyfile
    assert "reverse_proxy seaweedfs:8333" in caddyfile
    assert 'handle /.proxy/health {\n\t\trespond "ok" 200' in caddyfile
    proxy = recipes.compose()["services"]["proxy"]
    assert "./deploy/caddy/Caddyfile:/etc/caddy/Caddyfile:ro" in proxy["volumes"]


def test_no_secret_is_committed() -> None:
    values = recipes.example_env()
    assert {name: values[name] for name in SECRETS} == dict.fromkeys(SECRETS, "")
    assert ".env" in (recipes.ROOT / ".gitignore").read_text().splitlines()
