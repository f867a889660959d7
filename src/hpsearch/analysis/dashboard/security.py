"""Who may reach the dashboard: loopback only unless a token is set, and then every request carries it.

A request proves it knows the token with ``Authorization: Bearer <token>`` (scripts), or with the
``hpsearch_token`` cookie that opening any page once as ``...?token=<token>`` sets (browsers: the server
answers with the cookie, HttpOnly and SameSite=Strict, and a redirect to the same URL without the token).

Example::

    >>> check_bind("0.0.0.0", None)
    Traceback (most recent call last):
    hpsearch.errors.UsageError: --host: 0.0.0.0 is not a loopback address: set --token (or HPSEARCH_DASHBOARD_TOKEN)
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import Any
from urllib.parse import parse_qsl, urlencode

from hpsearch.errors import UsageError

COOKIE = "hpsearch_token"
Scope = dict[str, Any]


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine. Example: ``is_loopback("::1")`` is True."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve beyond this machine without a token (one line naming the option)."""
    if not is_loopback(host) and not token:
        raise UsageError("--host", f"{host} is not a loopback address: set --token (or HPSEARCH_DASHBOARD_TOKEN)")
    if token is not None and len(token) < 16:
        hint = "`python -c 'import secrets; print(secrets.token_urlsafe())'`"
        raise UsageError("--token", f"use at least 16 characters, e.g. from {hint}")


class TokenGate:
    """ASGI middleware: a request without the token gets 401 (and nothing about the database).

    Example: ``TokenGate(app, "a-long-random-token-123")``."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.token = token.encode()

    def _valid(self, supplied: str | None) -> bool:
        return supplied is not None and hmac.compare_digest(supplied.encode(), self.token)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        authorization = headers.get("authorization", "")
        bearer = authorization[7:].strip() if authorization.lower().startswith("bearer ") else None
        cookies = dict(
            part.strip().split("=", 1) for part in headers.get("cookie", "").split(";") if "=" in part
        )
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        from_query = next((v for k, v in query if k == "token"), None)
        if from_query is not None and self._valid(from_query):
            # Trade the token in the URL for a cookie, and drop it from the address bar and history.
            rest = urlencode([(k, v) for k, v in query if k != "token"])
            raw = scope.get("raw_path") or scope["path"].encode()
            location = raw.decode("latin-1").split("?", 1)[0] + (f"?{rest}" if rest else "")
            cookie = f"{COOKIE}={self.token.decode()}; HttpOnly; SameSite=Strict; Path=/"
            redirect = [(b"location", location.encode("latin-1")), (b"set-cookie", cookie.encode())]
            await _respond(send, 303, b"", redirect)
            return
        if self._valid(bearer) or self._valid(cookies.get(COOKIE)):
            await self.app(scope, receive, send)
            return
        body = b"401: this dashboard needs its token (Authorization: Bearer ..., or open it once with ?token=...)\n"
        await _respond(send, 401, body, [(b"www-authenticate", b"Bearer"), (b"content-type", b"text/plain")])


async def _respond(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode()), (b"cache-control", b"no-store")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
