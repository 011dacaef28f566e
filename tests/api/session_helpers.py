"""Signing in as the web page does, with the cookie kept by the test rather than a cookie jar."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx

COOKIE = "bigupload_session"
_COOKIE_RE = re.compile(rf"^{COOKIE}=([A-Za-z0-9_-]+);")
#: What a same-origin fetch of the page carries (browsers set it themselves).
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}


@dataclass
class Signed:
    """A signed-in browser: its cookie token and the session the service answered."""

    http: httpx.AsyncClient
    token: str
    info: dict[str, Any]
    set_cookie: str

    @property
    def cookie(self) -> dict[str, str]:
        return {"Cookie": f"{COOKIE}={self.token}"}

    @property
    def csrf(self) -> dict[str, str]:
        return {"X-CSRF-Token": self.info["csrf_token"]}

    async def request(
        self, method: str, url: str, *, headers: dict[str, str] | None = None, **kw: Any
    ) -> httpx.Response:
        """A request with the cookie and exactly ``headers`` besides (no CSRF proof unless
        given)."""
        return await self.http.request(
            method, url, headers={**self.cookie, **(headers or {})}, **kw
        )


async def sign_in_response(
    http: httpx.AsyncClient, api_key: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    response = await http.post("/api/v1/session", json={"api_key": api_key}, headers=headers)
    http.cookies.clear()  # the test sends the cookie itself, or not
    return response


async def sign_in(
    http: httpx.AsyncClient, api_key: str, headers: dict[str, str] | None = None
) -> Signed:
    response = await sign_in_response(http, api_key, headers)
    assert response.status_code == 200, response.text
    set_cookie = response.headers["set-cookie"]
    match = _COOKIE_RE.match(set_cookie)
    assert match is not None, set_cookie
    return Signed(http, match.group(1), response.json(), set_cookie)
