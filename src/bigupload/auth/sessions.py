"""The web page's sign-in: a session cookie, and the checks that keep other sites from using it.

A browser signs in with an API key (``POST /api/v1/session``) and gets a random token in an
HttpOnly, SameSite=Strict cookie; the registry keeps only its SHA-256 digest. Requests that
authenticate with the cookie must also show they come from the page itself (CSRF): one of

- ``X-CSRF-Token`` equal to the session's CSRF token (an HMAC of the session token with the
  service's secret, given in ``SessionInfo.csrf_token``);
- ``Sec-Fetch-Site: same-origin``, which browsers set themselves (Uppy 6 sends no custom
  headers, so its requests pass this way);
- ``Origin`` equal to the service's own origin or one of ``cors_origins``;
- for a ``GET`` or ``HEAD``, neither ``Sec-Fetch-Site`` nor ``Origin``: browsers send no fetch
  metadata to a plain-HTTP origin other than localhost, and no ``Origin`` on a same-origin GET,
  so the page's ``EventSource`` and Uppy's GETs must pass there. Another site's page gets no
  cookie sent (SameSite=Strict), and a sibling origin of the same site cannot read the answer
  (no CORS); every change of state (POST, PUT, DELETE) carries ``Origin`` in every browser.

Bearer callers are never checked: a page of another site cannot make a browser send a bearer
key it does not know.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from starlette.requests import Request

from bigupload.config import Settings

COOKIE_NAME = "bigupload_session"
#: Tokens are 43 characters; anything much longer is not one of ours.
MAX_TOKEN_LENGTH = 128
_SAFE = frozenset({"GET", "HEAD"})
CSRF_HEADER = "x-csrf-token"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def new_token() -> str:
    """A session token: 256 random bits, URL-safe (and so cookie-safe) characters."""
    return secrets.token_urlsafe(32)


def csrf_token(secret: str, token: str) -> str:
    """The CSRF token of the session whose cookie holds ``token``."""
    message = b"bigupload-csrf:" + token.encode("utf-8")
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def cookie_header(request: Request, settings: Settings, token: str, *, max_age: int) -> str:
    """A ``Set-Cookie`` value for the session cookie (``token=""``, ``max_age=0``: clear it)."""
    parts = [f"{COOKIE_NAME}={token}", "HttpOnly", "SameSite=Strict", "Path=/"]
    parts.append(f"Max-Age={max_age}")
    if _secure(request, settings):
        parts.append("Secure")
    return "; ".join(parts)


def _secure(request: Request, settings: Settings) -> bool:
    """``auto``: the request came over HTTPS, or the public URL is HTTPS (a proxy ends TLS)."""
    if settings.session_cookie_secure == "auto":
        return request.url.scheme == "https" or settings.effective_public_url.startswith("https:")
    return settings.session_cookie_secure == "always"


def clear_cookie_header(request: Request, settings: Settings) -> str:
    return cookie_header(request, settings, "", max_age=0)


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of a URL or an ``Origin`` header, normalised; ``None`` if it
    has none (``null``, garbage)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def origin_allowed(request: Request, settings: Settings, origin: str) -> bool:
    """Whether a page of ``origin`` may use the session: the service's own origin (as the
    request reached it, or as its public URL says) or one of ``cors_origins``."""
    given = origin_of(origin)
    if given is None:
        return False
    if given in (origin_of(str(request.base_url)), origin_of(settings.effective_public_url)):
        return True
    return any(given == origin_of(allowed) for allowed in settings.cors_origins)


def csrf_passed(request: Request, settings: Settings, expected: str) -> bool:
    """Whether a cookie-authenticated request shows it comes from the page (see the module)."""
    given = request.headers.get(CSRF_HEADER)
    if given is not None:  # a wrong token is refused, whatever else the request shows
        return hmac.compare_digest(given.encode("latin-1"), expected.encode("ascii"))
    if request.headers.get("sec-fetch-site") == "same-origin":
        return True
    origin = request.headers.get("origin")
    if origin is None:
        return request.method in _SAFE and "sec-fetch-site" not in request.headers
    return origin_allowed(request, settings, origin)


def sign_in_allowed(request: Request, settings: Settings) -> bool:
    """Whether a sign-in may proceed: refused when a browser says another site sent it (a page
    elsewhere must not sign the browser in with a key of its choosing). Clients that are not
    browsers send neither header and pass."""
    if request.headers.get("sec-fetch-site") == "same-origin":
        return True
    origin = request.headers.get("origin")
    if origin is not None:
        return origin_allowed(request, settings, origin)
    return "sec-fetch-site" not in request.headers


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"
