"""JWTs from an identity provider: a shared HS256 secret, or public keys from a JWKS URL."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from bigupload import clock
from bigupload.auth.tokens import owner_from_claim
from bigupload.config import ConfigError, load_settings
from tests.cli.helpers import bigupload
from tests.conftest import Caller, make_key
from tests.support.live import LiveServer
from tests.support.net import free_port

SECRET = "idp-shared-secret-" + "s" * 32
AUDIENCE = "bigupload-api"
ISSUER = "https://idp.example.test/"
BODY = {"filename": "a.mp4", "content_type": "video/mp4", "size": 10}


def claims(**changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "sub": "user-1",
        "aud": AUDIENCE,
        "iss": ISSUER,
        "exp": int(time.time()) + 600,
    }
    values.update(changes)
    return {k: v for k, v in values.items() if v is not None}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class TestSharedSecret:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"jwt_secret": SECRET, "jwt_audience": AUDIENCE, "jwt_issuer": ISSUER}

    def token(self, **changes: Any) -> str:
        return jwt.encode(claims(**changes), SECRET, algorithm="HS256")

    async def test_a_valid_token_is_its_subjects_owner(self, http: httpx.AsyncClient) -> None:
        created = await http.post("/api/v1/uploads", json=BODY, headers=bearer(self.token()))
        assert created.status_code == 201, created.text
        assert created.json()["key"].startswith("uploads/jwt.user-1/")
        record = (
            await http.get(f"/api/v1/files/{created.json()['id']}", headers=bearer(self.token()))
        ).json()
        assert record["owner"] == "jwt.user-1"

    async def test_subjects_see_only_their_own_files(self, http: httpx.AsyncClient) -> None:
        one, two = bearer(self.token(sub="user-1")), bearer(self.token(sub="user-2"))
        file_id = (await http.post("/api/v1/uploads", json=BODY, headers=one)).json()["id"]
        assert (await http.get(f"/api/v1/files/{file_id}", headers=two)).status_code == 404
        assert (await http.get("/api/v1/files", headers=two)).json()["items"] == []

    async def test_a_subject_named_like_a_key_owner_does_not_reach_its_files(
        self, app: FastAPI, http: httpx.AsyncClient
    ) -> None:
        admin = Caller(http, await make_key(app, "admin"), "admin")
        file_id = (await admin.post("/api/v1/uploads", json=BODY)).json()["id"]
        as_subject = bearer(self.token(sub="admin"))
        response = await http.get(f"/api/v1/files/{file_id}", headers=as_subject)
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "file_not_found"
        assert (await http.get("/api/v1/files", headers=as_subject)).json()["items"] == []
        assert (
            await http.delete(f"/api/v1/files/{file_id}", headers=as_subject)
        ).status_code == 404
        assert [f["id"] for f in (await admin.get("/api/v1/files")).json()["items"]] == [file_id]

    async def test_long_subjects_stay_within_an_owners_64_characters(
        self, http: httpx.AsyncClient
    ) -> None:
        for subject in ("u" * 64, "auth0|" + "x" * 70):
            created = await http.post(
                "/api/v1/uploads", json=BODY, headers=bearer(self.token(sub=subject))
            )
            assert created.status_code == 201, created.text
            owner = created.json()["key"].split("/")[1]
            assert owner.startswith("jwt.") and len(owner) <= 64
            assert owner == owner_from_claim(subject, "jwt.")

    async def test_api_keys_still_work_beside_tokens(self, alice: Caller) -> None:
        assert (await alice.get("/api/v1/files")).status_code == 200

    @pytest.mark.parametrize(
        ("change", "code"),
        [
            ({"exp": int(time.time()) - 300}, "token_expired"),
            ({"aud": "another-api"}, "invalid_token"),
            ({"iss": "https://evil.example.test/"}, "invalid_token"),
            ({"sub": None}, "invalid_token"),
            ({"exp": None}, "invalid_token"),
            ({"sub": 42}, "invalid_token"),
        ],
        ids=["expired", "audience", "issuer", "no-subject", "no-expiry", "numeric-subject"],
    )
    async def test_bad_claims_are_401(
        self, http: httpx.AsyncClient, change: dict[str, Any], code: str
    ) -> None:
        response = await http.get("/api/v1/files", headers=bearer(self.token(**change)))
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] == code

    @pytest.mark.parametrize("forgery", ["other-secret", "alg-none", "garbage", "tampered"])
    async def test_forged_tokens_are_401(self, http: httpx.AsyncClient, forgery: str) -> None:
        if forgery == "other-secret":
            token = jwt.encode(claims(), "x" * 48, algorithm="HS256")
        elif forgery == "alg-none":
            token = jwt.encode(claims(), None, algorithm="none")
        elif forgery == "garbage":
            token = "not.a.token"
        else:
            head, _, signature = self.token().split(".")
            evil = jwt.utils.base64url_encode(json.dumps(claims(sub="admin")).encode()).decode()
            token = f"{head}.{evil}.{signature}"
        response = await http.get("/api/v1/files", headers=bearer(token))
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_token"

    async def test_a_cached_token_still_expires(self, http: httpx.AsyncClient) -> None:
        token = self.token(exp=int(time.time()) + 60)
        assert (await http.get("/api/v1/files", headers=bearer(token))).status_code == 200
        clock.set_clock(lambda: datetime.now(UTC) + timedelta(seconds=120))
        try:
            response = await http.get("/api/v1/files", headers=bearer(token))
        finally:
            clock.set_clock(None)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "token_expired"

    async def test_unsafe_subjects_become_safe_owners(self, http: httpx.AsyncClient) -> None:
        subject = "auth0|abc/../../etc"
        response = await http.post(
            "/api/v1/uploads", json=BODY, headers=bearer(self.token(sub=subject))
        )
        owner = owner_from_claim(subject, "jwt.")
        assert owner.startswith("jwt.auth0_abc_.._.._etc-") and len(owner) <= 64
        assert response.json()["key"].startswith(f"uploads/{owner}/")
        assert owner != owner_from_claim("auth0_abc_.._.._etc", "jwt.")


class TestEmptyOwnerPrefix:
    """``BIGUPLOAD_JWT_OWNER_PREFIX=`` keeps the owners of deployments made before the prefix:
    a subject is its owner as is, and so reaches the key owner of the same name."""

    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {
            "jwt_secret": SECRET,
            "jwt_audience": AUDIENCE,
            "jwt_issuer": ISSUER,
            "jwt_owner_prefix": "",
        }

    async def test_the_subject_is_the_owner(self, app: FastAPI, http: httpx.AsyncClient) -> None:
        admin = Caller(http, await make_key(app, "admin"), "admin")
        file_id = (await admin.post("/api/v1/uploads", json=BODY)).json()["id"]
        token = jwt.encode(claims(sub="admin"), SECRET, algorithm="HS256")
        response = await http.get(f"/api/v1/files/{file_id}", headers=bearer(token))
        assert response.status_code == 200, response.text
        assert response.json()["owner"] == "admin"


@pytest.fixture(scope="module")
def rsa_keys() -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    return (
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )


@pytest.fixture
def jwks_server(rsa_keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]) -> Iterator[LiveServer]:
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(rsa_keys[0].public_key(), as_dict=True)
    keys = {"keys": [{**jwk, "kid": "key-1", "use": "sig", "alg": "RS256"}]}
    app = Starlette(routes=[Route("/jwks.json", lambda request: JSONResponse(keys))])
    server = LiveServer(app, free_port()).start()
    yield server
    server.stop()


class TestKeySet:
    @pytest.fixture
    def settings_overrides(self, jwks_server: LiveServer) -> dict[str, Any]:
        return {"jwt_jwks_url": f"{jwks_server.url}/jwks.json", "jwt_audience": AUDIENCE}

    def token(self, key: rsa.RSAPrivateKey, kid: str = "key-1") -> str:
        return jwt.encode(claims(), key, algorithm="RS256", headers={"kid": kid})

    async def test_a_token_signed_by_the_providers_key_is_accepted(
        self, http: httpx.AsyncClient, rsa_keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]
    ) -> None:
        response = await http.get("/api/v1/files", headers=bearer(self.token(rsa_keys[0])))
        assert response.status_code == 200, response.text

    async def test_another_key_under_the_same_kid_is_refused(
        self, http: httpx.AsyncClient, rsa_keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]
    ) -> None:
        response = await http.get("/api/v1/files", headers=bearer(self.token(rsa_keys[1])))
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_token"

    async def test_an_unknown_kid_is_refused(
        self, http: httpx.AsyncClient, rsa_keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]
    ) -> None:
        response = await http.get(
            "/api/v1/files", headers=bearer(self.token(rsa_keys[0], kid="key-9"))
        )
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_token"

    async def test_an_hs256_token_made_with_the_public_key_is_refused(
        self, http: httpx.AsyncClient, rsa_keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]
    ) -> None:
        public_pem = (
            rsa_keys[0]
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        header = jwt.utils.base64url_encode(
            json.dumps({"alg": "HS256", "typ": "JWT", "kid": "key-1"}).encode()
        )
        payload = jwt.utils.base64url_encode(json.dumps(claims()).encode())
        signature = jwt.utils.base64url_encode(
            hmac.new(public_pem, header + b"." + payload, hashlib.sha256).digest()
        )
        token = (header + b"." + payload + b"." + signature).decode()
        response = await http.get("/api/v1/files", headers=bearer(token))
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_token"

    async def test_an_unreachable_provider_is_503(
        self,
        http: httpx.AsyncClient,
        jwks_server: LiveServer,
        rsa_keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey],
    ) -> None:
        jwks_server.stop()
        response = await http.get("/api/v1/files", headers=bearer(self.token(rsa_keys[0])))
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "identity_provider_unavailable"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"jwt_secret": SECRET}, "BIGUPLOAD_JWT_AUDIENCE is required"),
        (
            {"jwt_secret": SECRET, "jwt_jwks_url": "https://idp/jwks", "jwt_audience": "a"},
            "not both",
        ),
        ({"jwt_secret": "short", "jwt_audience": "a"}, "BIGUPLOAD_JWT_SECRET: must be a random"),
        ({"jwt_jwks_url": "ftp://idp", "jwt_audience": "a"}, "BIGUPLOAD_JWT_JWKS_URL"),
        ({"jwt_algorithms": "HS256,none", "jwt_secret": SECRET, "jwt_audience": "a"}, "'none'"),
        ({"jwt_owner_prefix": "jwt:"}, "BIGUPLOAD_JWT_OWNER_PREFIX"),
        ({"jwt_owner_prefix": "../"}, "BIGUPLOAD_JWT_OWNER_PREFIX"),
        ({"jwt_owner_prefix": "-jwt"}, "BIGUPLOAD_JWT_OWNER_PREFIX"),
    ],
)
def test_jwt_configuration_errors(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(**overrides)


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--owner", "jwt.admin", "--", "sneaky"], {}),
        (["--owner", "JWT.Admin", "--", "sneaky"], {}),
        (["--", "jwt.admin"], {}),
        (["--owner", "idp-admin", "--", "sneaky"], {"BIGUPLOAD_JWT_OWNER_PREFIX": "idp-"}),
    ],
    ids=["owner", "owner-case", "name-as-owner", "configured-prefix"],
)
def test_keys_create_refuses_the_jwt_owners_prefix(
    tmp_path: Path, args: list[str], env: dict[str, str]
) -> None:
    result = bigupload(tmp_path / "data", "keys", "create", *args, **env)
    assert result.code == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.err_lines == [
        f"bigupload: owners beginning with {env.get('BIGUPLOAD_JWT_OWNER_PREFIX', 'jwt.')!r} "
        "are JWT subjects' (BIGUPLOAD_JWT_OWNER_PREFIX): choose another owner"
    ], result.stderr
