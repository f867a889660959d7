"""The dashboard's ASGI application (Starlette): pages, their live JSON, the JSON API and static files.

Routes (``{name}`` is percent-encoded, "/" too; see docs/dashboard.md)::

    /                                   studies            /live/                        its live JSON
    /studies/{name}                     study              /live/studies/{name}          ...
    /studies/{name}/trials/{number}     trial              /live/studies/{name}/trials/{number}
    /studies/{name}/final               final models       /live/studies/{name}/final
    /workers                            workers            /live/workers
    /api/studies  /api/studies/{name}  /api/studies/{name}/trials?state=&sort=&order=&offset=&limit=
    /api/studies/{name}/trials/{number}  /api/studies/{name}/final  /api/workers  /api/health
    /static/plotly.min.js  /static/dashboard.js  /static/dashboard.css

Live pages and the API answer an ``ETag``; a request with a matching ``If-None-Match`` gets 304. The study
page's ETag is the study's fingerprint (three aggregate queries), so an unchanged study costs no more than
that, and a changed one is built once for every browser that watches it (a small cache).

Example::

    >>> app = create_app(open_readonly_store("sqlite:///hpsearch.db"), token=None)
    >>> uvicorn.run(app, host="127.0.0.1", port=8080)
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hpsearch.analysis.dashboard import data as api
from hpsearch.analysis.dashboard import pages
from hpsearch.analysis.dashboard.importance import Importances
from hpsearch.analysis.dashboard.layout import CSP, View, live_payload, render
from hpsearch.analysis.dashboard.security import TokenGate
from hpsearch.errors import HpsearchError, StoreError, UsageError
from hpsearch.store import Store

log = logging.getLogger("hpsearch.dashboard")
STATIC = Path(__file__).parent / "static"
_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}


class _Cache:
    """The newest rendering of each study page by fingerprint, so that many browsers polling a running
    study cost one build per change. Bounded; thread-safe (handlers run in a thread pool)."""

    def __init__(self, size: int = 32) -> None:
        self.items: OrderedDict[str, tuple[str, View]] = OrderedDict()
        self.lock = threading.Lock()
        self.size = size

    def get(self, key: str, version: str, build: Callable[[], View]) -> View:
        with self.lock:
            hit = self.items.get(key)
            if hit is not None and hit[0] == version:
                self.items.move_to_end(key)
                return hit[1]
        view = build()  # outside the lock: one slow study does not hold up the others
        with self.lock:
            self.items[key] = (version, view)
            self.items.move_to_end(key)
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        return view


def _etag(text: str) -> str:
    return '"' + hashlib.sha256(text.encode()).hexdigest()[:20] + '"'


def _not_modified(request: Request, etag: str) -> Response | None:
    if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers={**_HEADERS, "ETag": etag})
    return None


def _segments(request: Request, prefix: str) -> list[str]:
    """The path after ``prefix`` split on "/" before percent-decoding, so a study named "a/b" (sent as
    a%2Fb) is one segment."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    path = raw.decode("latin-1").split("?", 1)[0]
    rest = path[len(prefix) :].strip("/")
    return [unquote(s) for s in rest.split("/")] if rest else []


def _number(text: str) -> int:
    if not text.isdigit() or int(text) > 2**31 - 1:
        raise UsageError(f"trial {text}", "not a trial number")
    return int(text)


class Dashboard:
    """The handlers over one read-only :class:`Store`. Example: ``Dashboard(store).app()``."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.cache = _Cache()
        self.importances = Importances()
        self._static: dict[str, tuple[bytes, str, str]] = {}

    # --- pages and their live JSON ---------------------------------------------------------------------

    def _view(self, segments: list[str]) -> tuple[View, str | None]:
        """The page at ``segments`` (after /studies, or [] for the studies page and ["workers"]), and its
        version when one can be known before building it (the study page)."""
        match segments:
            case []:
                return pages.studies_view(self.store), None
            case ["workers"]:
                return pages.workers_view(self.store), None
            case ["studies", name]:
                version = self._study_version(segments)
                assert version is not None
                build = lambda: pages.study_view(self.store, name, self.importances)  # noqa: E731
                return self.cache.get(name, version, build), version
            case ["studies", name, "trials", number]:
                return pages.trial_view(self.store, name, _number(number)), None
            case ["studies", name, "final"]:
                return pages.final_view(self.store, name), None
        raise UsageError("/" + "/".join(segments), "no such page")

    def _study_version(self, segments: list[str]) -> str | None:
        """The study page's version: the study's fingerprint and its importances' stamp."""
        if len(segments) == 2 and segments[0] == "studies":
            name = segments[1]
            return f"{self.store.study_fingerprint(self.store.study(name).id)}|i{self.importances.stamp(name)}"
        return None

    def page(self, request: Request) -> Response:
        segments = _segments(request, "")
        view, version = self._view(segments)
        payload = live_payload(view)
        etag = _etag(version or payload)
        raw = (request.scope.get("raw_path") or request.url.path.encode()).decode("latin-1").split("?", 1)[0]
        live = "/live" + raw if segments else "/live/"
        html = render(view, live_url=live, etag=etag, payload=payload)  # built once (megabytes at 10,000 trials)
        return Response(html, media_type="text/html; charset=utf-8", headers=_HEADERS)

    def live(self, request: Request) -> Response:
        segments = _segments(request, "/live")
        version = self._study_version(segments)
        if version is not None and (unchanged := _not_modified(request, _etag(version))):
            return unchanged  # the study has not moved: three small queries, nothing built
        view, _ = self._view(segments)
        payload = live_payload(view)
        etag = _etag(version or payload)
        if unchanged := _not_modified(request, etag):
            return unchanged
        return Response(payload, media_type="application/json", headers={**_HEADERS, "ETag": etag})

    # --- the JSON API ----------------------------------------------------------------------------------

    def api(self, request: Request) -> Response:
        segments = _segments(request, "/api")
        result: Any
        match segments:
            case ["health"]:
                result = {"ok": True, "studies": len(self.store.studies())}
            case ["studies"]:
                result = api.list_studies(self.store)
            case ["studies", name]:
                result = api.study_detail(self.store, name)
            case ["studies", name, "trials"]:
                query = api.TrialQuery.parse(dict(request.query_params))
                result = api.trial_page(self.store, name, query)
            case ["studies", name, "trials", number]:
                result = api.trial_detail(self.store, name, _number(number))
            case ["studies", name, "final"]:
                result = api.final_models(self.store, name)
            case ["workers"]:
                result = api.list_workers(self.store)
            case _:
                raise UsageError(request.url.path, "no such API endpoint")
        body = json.dumps(result, separators=(",", ":"), allow_nan=False)
        etag = _etag(body)
        if unchanged := _not_modified(request, etag):
            return unchanged
        return Response(body, media_type="application/json", headers={**_HEADERS, "ETag": etag})

    # --- static files ----------------------------------------------------------------------------------

    def static(self, request: Request) -> Response:
        name = request.path_params["file"]
        if name not in self._static:
            if name == "plotly.min.js":
                from plotly.offline import get_plotlyjs

                content, kind = get_plotlyjs().encode(), "text/javascript"
            elif name in ("dashboard.js", "dashboard.css"):
                content = (STATIC / name).read_bytes()
                kind = "text/javascript" if name.endswith(".js") else "text/css"
            else:
                return Response("not found", status_code=404, media_type="text/plain", headers=_HEADERS)
            self._static[name] = (content, kind, '"' + hashlib.sha256(content).hexdigest()[:20] + '"')
        content, kind, etag = self._static[name]
        if unchanged := _not_modified(request, etag):
            return unchanged
        headers = {**_HEADERS, "ETag": etag, "Cache-Control": "public, max-age=3600"}
        return Response(content, media_type=kind, headers=headers)


def _error(request: Request, exc: Exception) -> Response:
    """One line for the reader, no traceback and no database URL (StoreError's are masked)."""
    if isinstance(exc, StoreError):
        status, message = 503, f"{exc.where}: {exc.what}"
    elif isinstance(exc, UsageError):
        status = 404 if ("no such" in exc.what or "not a trial" in exc.what) else 400
        message = f"{exc.where}: {exc.what}"
    else:
        log.exception("dashboard: %s failed", request.url.path)
        status, message = 500, "internal error (see the dashboard's log)"
    if isinstance(exc, HpsearchError):  # a database down is worth a warning; a bad request is not
        log.log(logging.WARNING if status == 503 else logging.INFO, "dashboard: %s: %s", request.url.path, message)
    if request.url.path.startswith(("/api/", "/live/")):
        return JSONResponse({"error": message}, status_code=status, headers=_HEADERS)
    from hpsearch.analysis.report.page import escape

    html = f"<!DOCTYPE html><title>hpsearch</title><p>{escape(message)}</p><p><a href='/'>Studies</a></p>"
    return Response(html, status_code=status, media_type="text/html; charset=utf-8", headers=_HEADERS)


def create_app(store: Store, token: str | None = None) -> Any:
    """The dashboard over ``store`` (open it with :func:`open_readonly_store`); with ``token`` every request
    must carry it (see :class:`~hpsearch.analysis.dashboard.security.TokenGate`).

    Example: ``uvicorn.run(create_app(open_readonly_store(url), token="s3cret"), host="0.0.0.0", port=8080)``.
    """
    board = Dashboard(store)

    def guarded(handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        def endpoint(request: Request) -> Response:
            try:
                return handler(request)
            except Exception as exc:
                return _error(request, exc)

        return endpoint

    routes = [
        Route("/", guarded(board.page)),
        Route("/workers", guarded(board.page)),
        Route("/studies/{rest:path}", guarded(board.page)),
        Route("/live/{rest:path}", guarded(board.live)),
        Route("/api/{rest:path}", guarded(board.api)),
        Route("/static/{file}", guarded(board.static)),
    ]
    app = Starlette(routes=routes)
    app.state.dashboard = board
    return TokenGate(app, token) if token else app
