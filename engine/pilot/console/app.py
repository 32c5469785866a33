"""The console's HTTP face: pages, the JSON API, the event stream; sign-in and roles on every route.

Every request body is read to a fixed bound before parsing; every state-changing request needs the
session's CSRF token in `X-CSRF-Token` and, when the browser names one, a same-origin `Origin`. Session
cookies are HttpOnly and SameSite=Strict (Secure under TLS). Pages are served with a CSP that allows
only the console's own scripts and styles, so a device name holding markup stays text even if a page
forgot to. Blocking work (argon2, the database) runs in the thread pool, never on the event loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from pilot.console import auth, live
from pilot.console.commands import CommandSender, PressError
from pilot.console.config import ConsoleConfig
from pilot.console.editor import MAX_TEXT, EditorError
from pilot.console.fleet import Fleet
from pilot.console.ingest import DEVICE_ID, KEY, Ingest
from pilot.console.storage import CommandRecord

STATIC = Path(__file__).parent / "static"
MAX_BODY = 16 * 1024
# an editor text is at most MAX_TEXT bytes once decoded; its JSON may escape each character to six bytes
# and a diff carries two texts, so the body is read to this bound and the texts are measured after parsing
MAX_EDITOR_BODY = 4 * MAX_TEXT + 16 * 1024
RANGES = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400, "365d": 365 * 86400}
MAX_POINTS = 10_000
STORAGE_STATS_EVERY_S = 60.0
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
ANONYMOUS = auth.Session("", "anonymous", auth.Role.VIEWER, "", 0.0, float("inf"), 0.0)


@dataclass
class Console:
    """Everything a request may touch."""

    config: ConsoleConfig
    fleet: Fleet
    storage: Any
    ingest: Ingest
    sender: CommandSender
    users: auth.UsersFile
    sessions: auth.Sessions
    limiter: auth.LoginLimiter
    clock: Callable[[], float] = time.time
    streams: int = 0
    streams_by: dict[str, int] = field(default_factory=dict)
    storage_stats: tuple[float, dict[str, float]] | None = None  # (when, what the store counted)
    started: float = field(default_factory=time.time)
    editor_service: Any = None  # made on the first editor request (editor/service.py loads the compiler)
    profile_sender: Any = None  # made on the first device profile request (deploy.py)
    links: auth.SignInLinks | None = None  # one-time sign-in links: only a console `pilot console --open` started

    def editor(self) -> Any:
        if not self.config.editor.enabled:
            raise ApiError(404, "the profile editor is off on this console (editor.enabled)")
        if self.editor_service is None:
            from pilot.console.editor.service import EditorService

            self.editor_service = EditorService(self.config.editor.profiles_dir)
        return self.editor_service

    def profiles(self) -> Any:
        if self.profile_sender is None:
            from pilot.console.deploy import ProfileSender

            sender = ProfileSender(
                self.ingest.publish, self.sender, self.fleet, self.config.broker.prefix, clock=self.clock
            )
            self.sender.profile_results = sender.on_result
            self.profile_sender = sender
        return self.profile_sender


class ApiError(Exception):
    def __init__(self, status: int, error: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(error)
        self.status, self.error, self.headers = status, error, headers or {}


def _error(status: int, error: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error}, status_code=status, headers=headers)


# ---------------------------------------------------------------------- request helpers
def same_user(request: Request) -> bool:
    """Whether the connection comes from a socket this process's user opened (Linux: the kernel's socket
    table; elsewhere, where no table says, True: the link's secrecy is all there is)."""
    import sys

    from pilot.console.localpeer import peer_uid

    client, server = request.scope.get("client"), request.scope.get("server")
    if not sys.platform.startswith("linux"):
        return True
    if not client or not server:
        return False
    return peer_uid(int(client[1]), int(server[1])) == os.getuid()


def client_address(console: Console, request: Request) -> str:
    peer = request.client.host if request.client else "?"
    if peer in console.config.http.trusted_proxies:
        forwarded = request.headers.get("x-forwarded-for", "")
        if forwarded:
            return forwarded.split(",")[-1].strip()[:64] or peer
    return peer


def scheme(console: Console, request: Request) -> str:
    if console.config.http.tls:
        return "https"
    peer = request.client.host if request.client else ""
    if peer in console.config.http.trusted_proxies and request.headers.get("x-forwarded-proto") == "https":
        return "https"
    return "http"


def own_page(target: str) -> str:
    """`target` when it is a page of this console, else `/`: never an open redirect, and ASCII only since
    a Location header is Latin-1."""
    if (
        len(target) <= 512
        and target.startswith("/")
        and not target.startswith(("//", "/\\"))
        and target.isprintable()
        and target.isascii()
    ):
        return target
    return "/"


async def read_json(request: Request, limit: int = MAX_BODY) -> Any:
    """The body as JSON, at most `limit` bytes, UTF-8, an object."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise ApiError(415, "send application/json")
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        raise ApiError(413, "request body too large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, "request body too large")
    try:
        doc = json.loads(bytes(body).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ApiError(400, "the body is not JSON") from None
    if not isinstance(doc, dict):
        raise ApiError(400, "the body must be a JSON object")
    return doc


async def session_of(console: Console, request: Request) -> auth.Session | None:
    token = request.cookies.get(auth.COOKIE_NAME)
    if token is None:
        return None
    try:
        return await run_in_threadpool(console.sessions.lookup, token)
    except auth.UsersFileError as exc:  # someone broke the file while the console runs: say so, admit nobody
        raise ApiError(503, str(exc)) from None


async def require(console: Console, request: Request, role: auth.Role = auth.Role.VIEWER) -> auth.Session:
    session = await session_of(console, request)
    if session is None:
        if console.config.auth.anonymous_read and role == auth.Role.VIEWER and request.method == "GET":
            return ANONYMOUS
        raise ApiError(401, "sign in first")
    if session.role < role:
        raise ApiError(403, f"this needs the {role.label} role")
    if request.method not in ("GET", "HEAD"):
        check_origin(console, request)
        if not auth.check_csrf(session, request.headers.get("x-csrf-token")):
            raise ApiError(403, "missing or wrong CSRF token")
    return session


def check_origin(console: Console, request: Request) -> None:
    origin = request.headers.get("origin") or request.headers.get("referer")
    if origin is not None and not auth.same_origin(origin, request.headers.get("host"), scheme(console, request)):
        raise ApiError(403, "cross-origin request refused")


def device_id_of(request: Request) -> str:
    device = request.path_params["device"]
    if not DEVICE_ID.fullmatch(device):
        raise ApiError(404, "no such device")
    return device


# ---------------------------------------------------------------------- routes
def build(console: Console) -> Starlette:
    def handler(fn: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def wrapped(request: Request) -> Response:
            try:
                return await fn(request)
            except ApiError as exc:
                return _error(exc.status, exc.error, exc.headers)
            except EditorError as exc:
                return _error(exc.status, exc.message)

        return wrapped

    async def page(request: Request) -> Response:
        index = STATIC / "index.html"
        if not index.is_file():
            return _error(500, "the console's pages are not built (web/: npm ci && npm run build)")
        return FileResponse(index, headers={"cache-control": "no-cache"})

    async def healthz(request: Request) -> Response:
        fleet = console.fleet
        return JSONResponse({"ok": True, "broker": fleet.broker_connected, "ready": fleet.broker_ready})

    @handler
    async def login(request: Request) -> Response:
        check_origin(console, request)
        doc = await read_json(request)
        name, password = doc.get("username"), doc.get("password")
        if not isinstance(name, str) or not isinstance(password, str):
            raise ApiError(400, "username and password are text")
        addr = client_address(console, request)
        wait = console.limiter.begin(addr, name)
        if wait is not None:
            seconds = max(1, int(wait + 0.999))
            raise ApiError(429, f"too many attempts; wait {seconds} s", {"retry-after": str(seconds)})
        user = None
        try:
            user = await run_in_threadpool(console.users.verify, name, password)
        except auth.AuthError:
            pass
        finally:
            console.limiter.end(addr, name, user is not None)
        if user is None:
            raise ApiError(401, "wrong user name or password")
        token, csrf = await run_in_threadpool(console.sessions.create, user)
        response = JSONResponse({"user": user.name, "role": user.role.label, "csrf": csrf})
        response.headers.append("set-cookie", auth.session_cookie(token, secure=scheme(console, request) == "https"))
        return response

    async def link(request: Request) -> Response:
        """A one-time sign-in link (`pilot console --open` hands one to the browser): a session, then the
        page it names. A used, expired or made-up link goes to the sign-in page like any visitor, and so
        does a browser of another local user (the link is on the browser's command line, which they can
        read): on Linux, only a connection whose socket this console's own uid opened may use it, and the
        link stays good for the right one."""
        if console.links is None or not await run_in_threadpool(same_user, request):
            return Response(status_code=303, headers={"location": "/login", "cache-control": "no-store"})
        name = console.links.redeem(request.query_params.get("t"))
        user = console.users.get(name) if name is not None else None
        if user is None:
            return Response(status_code=303, headers={"location": "/login", "cache-control": "no-store"})
        after = own_page(request.query_params.get("next", "/"))
        token, _csrf = await run_in_threadpool(console.sessions.create, user)
        response = Response(status_code=303, headers={"location": after, "cache-control": "no-store"})
        response.headers.append("set-cookie", auth.session_cookie(token, secure=scheme(console, request) == "https"))
        return response

    @handler
    async def logout(request: Request) -> Response:
        session = await require(console, request)
        if session is not ANONYMOUS:
            await run_in_threadpool(console.sessions.revoke, request.cookies.get(auth.COOKIE_NAME))
        response = Response(status_code=204)
        response.headers.append("set-cookie", auth.expired_cookie(secure=scheme(console, request) == "https"))
        return response

    @handler
    async def session(request: Request) -> Response:
        s = await require(console, request)
        return JSONResponse({"user": s.user, "role": s.role.label, "csrf": s.csrf, "anonymous": s is ANONYMOUS})

    @handler
    async def fleet(request: Request) -> Response:
        await require(console, request)
        with console.fleet.lock:
            cursor = console.fleet.changes.seq
            broker = live.broker_state(console.fleet)
        return JSONResponse({"cursor": cursor, "broker": broker, "devices": console.fleet.summaries()})

    @handler
    async def device(request: Request) -> Response:
        await require(console, request)
        device_id = device_id_of(request)
        with console.fleet.lock:
            cursor = console.fleet.changes.seq
        detail = console.fleet.detail(device_id)
        if detail is None:
            raise ApiError(404, "no such device")
        presses = await run_in_threadpool(console.storage.command_log, device_id, 20)
        detail["presses"] = [
            {
                "ts": p.ts,
                "user": p.user,
                "command": p.command,
                "status": p.status,
                "reason": p.reason,
            }
            for p in presses
        ]
        detail["cursor"] = cursor
        detail["broker"] = live.broker_state(console.fleet)
        return JSONResponse(detail)

    @handler
    async def history(request: Request) -> Response:
        await require(console, request)
        device_id = device_id_of(request)
        key = request.path_params["key"]
        if not KEY.fullmatch(key):
            raise ApiError(404, "no such entity")
        q = request.query_params
        now = console.clock()
        try:
            if "start" in q or "end" in q:
                end = float(q.get("end", now))
                start = float(q.get("start", end - 3600))
            else:
                span = RANGES.get(q.get("range", "1h"))
                if span is None:
                    raise ApiError(400, f"range is one of {', '.join(RANGES)}")
                start, end = now - span, now
            points = int(q.get("points", MAX_POINTS))
        except ValueError:
            raise ApiError(400, "start, end and points are numbers") from None
        if not (0 <= start < end < 2**40) or not 1 <= points <= MAX_POINTS:
            raise ApiError(400, "need 0 <= start < end and 1 <= points <= 10000")
        entity = console.fleet.entity(device_id, key)
        series = await run_in_threadpool(console.storage.history, device_id, key, start, end, max_points=points)
        return JSONResponse(
            {
                "tier": series.tier,
                "ts": series.ts,
                "values": series.values,
                "unit": entity.unit if entity else None,
                "platform": entity.platform if entity else None,
                "start": start,
                "end": end,
            }
        )

    @handler
    async def press(request: Request) -> Response:
        session = await require(console, request, auth.Role.OPERATOR)
        device_id = device_id_of(request)
        command_id = request.path_params["command"]
        if not KEY.fullmatch(command_id):
            raise ApiError(404, "no such command")
        command = console.fleet.command(device_id, command_id)
        if command is None:
            entity = console.fleet.entity(device_id, command_id)
            command = entity.command if entity else None
        if command is None:
            raise ApiError(404, "no such command")
        doc = await read_json(request)
        try:
            answer = await console.sender.press(
                device_id, command, doc.get("value"), session.user, console.config.broker.prefix
            )
        except PressError as exc:
            answer = {"status": "rejected", "reason": exc.reason, "detail": exc.detail, "verified": True}
        record = CommandRecord(
            ts=console.clock(),
            user=session.user,
            device=device_id,
            command=command_id,
            value=str(doc.get("value") if command.platform != "button" else command.payload_press)[:64],
            status=answer["status"],
            reason=answer.get("reason", ""),
            detail=str(answer.get("detail", ""))[:200],
        )
        await run_in_threadpool(console.storage.log_command, record)
        return JSONResponse(answer)

    @handler
    async def stats(request: Request) -> Response:
        await require(console, request, auth.Role.ADMIN)
        # the store counts its rows (a scan that grows with history): at most once a minute
        now = console.clock()
        if console.storage_stats is None or now - console.storage_stats[0] >= STORAGE_STATS_EVERY_S:
            console.storage_stats = (now, await run_in_threadpool(console.storage.stats))
        storage_stats = console.storage_stats[1]
        s = console.sender.stats
        return JSONResponse(
            {
                "ingest": console.ingest.stats.as_json(),
                "commands": {"sent": s.sent, "answered": s.answered, "timeouts": s.timeouts, "forged": s.forged},
                "storage": storage_stats,
                "devices": len(console.fleet.devices),
                "streams": console.streams,
                "uptime_s": round(console.clock() - console.started),
            }
        )

    @handler
    async def events(request: Request) -> Response:
        session = await require(console, request)
        device = request.query_params.get("device")
        if device is not None and not DEVICE_ID.fullmatch(device):
            raise ApiError(404, "no such device")
        try:
            cursor = int(request.query_params.get("cursor", "0"))
        except ValueError:
            raise ApiError(400, "cursor is a number") from None
        # one signed-in browser (or one address reading anonymously) holds a few streams, not all of them
        owner = session.token_hash or "anonymous:" + client_address(console, request)
        if console.streams >= live.MAX_STREAMS or console.streams_by.get(owner, 0) >= live.MAX_STREAMS_EACH:
            raise ApiError(503, "too many open event streams", {"retry-after": "10"})
        stream = live.Stream(console.fleet, device, cursor)
        token = request.cookies.get(auth.COOKIE_NAME)

        async def still_signed_in() -> bool:
            if session is ANONYMOUS:
                return True
            try:
                current = await run_in_threadpool(console.sessions.lookup, token)
            except auth.AuthError:
                return False
            return current is not None

        def closed() -> None:
            console.streams -= 1
            left = console.streams_by.get(owner, 1) - 1
            if left > 0:
                console.streams_by[owner] = left
            else:
                console.streams_by.pop(owner, None)

        async def body():
            yield "retry: 2000\n\n"
            quiet = since_check = 0.0
            while True:
                event = stream.next_event()
                if event is not None:
                    quiet = 0.0
                    yield event
                else:
                    quiet += live.WAKE_S
                    if quiet >= live.HEARTBEAT_S:
                        quiet = 0.0
                        yield ": ping\n\n"
                since_check += live.WAKE_S
                # signed out, removed or expired: the stream ends too
                if since_check >= console.config.auth.stream_recheck_s:
                    since_check = 0.0
                    if not await still_signed_in():
                        yield "event: signed_out\ndata: {}\n\n"
                        return
                await asyncio.sleep(live.WAKE_S)

        # counted here, before any await, so streams asked for at once cannot all pass the check
        console.streams += 1
        console.streams_by[owner] = console.streams_by.get(owner, 0) + 1
        return EventStream(
            body(),
            closed,
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )

    # ------------------------------------------------------------------ the profile editor
    @handler
    async def editor_catalog(request: Request) -> Response:
        await require(console, request)
        return JSONResponse(await console.editor().catalog())

    @handler
    async def editor_packs(request: Request) -> Response:
        await require(console, request)
        return JSONResponse(await console.editor().packs())

    @handler
    async def editor_pack_profile(request: Request) -> Response:
        await require(console, request)
        params = request.path_params
        return JSONResponse(await console.editor().pack_profile(params["pack"], params["profile"]))

    def editor_post(work: str) -> Callable[[Request], Any]:
        @handler
        async def route(request: Request) -> Response:
            await require(console, request, auth.Role.OPERATOR)
            editor = console.editor()
            doc = await read_json(request, MAX_EDITOR_BODY)
            return JSONResponse(await getattr(editor, work)(doc))

        return route

    @handler
    async def editor_files(request: Request) -> Response:
        await require(console, request, auth.Role.OPERATOR)
        return JSONResponse(await console.editor().file_list())

    @handler
    async def editor_file(request: Request) -> Response:
        name = request.path_params["name"]
        if request.method == "PUT":
            await require(console, request, auth.Role.ADMIN)
            editor = console.editor()
            doc = await read_json(request, MAX_EDITOR_BODY)
            return JSONResponse(await editor.file_save(name, doc))
        await require(console, request, auth.Role.OPERATOR)
        return JSONResponse(await console.editor().file_read(name))

    @handler
    async def editor_broker_test(request: Request) -> Response:
        session = await require(console, request, auth.Role.ADMIN)
        editor = console.editor()
        doc = await read_json(request, MAX_EDITOR_BODY)
        return JSONResponse(await editor.broker_test(session.user, doc))

    @handler
    async def device_profile(request: Request) -> Response:
        session = await require(console, request, auth.Role.ADMIN)
        console.editor()  # off with the editor
        device_id = device_id_of(request)
        if console.fleet.detail(device_id) is None:
            raise ApiError(404, "no such device")
        from pilot.console.deploy import NoAnswer

        try:
            answer = await console.profiles().get(device_id, session.user)
        except NoAnswer:
            raise ApiError(
                504, "the device did not answer (is it online, and does its keyring hold our key?)"
            ) from None
        except PressError as exc:
            status = 503 if exc.reason in ("console_has_no_key", "broker_unavailable") else 502
            raise ApiError(status, f"{exc.reason}: {exc.detail}" if exc.detail else exc.reason) from None
        return JSONResponse(answer)

    @handler
    async def device_deploy(request: Request) -> Response:
        session = await require(console, request, auth.Role.ADMIN)
        editor = console.editor()
        device_id = device_id_of(request)
        if console.fleet.detail(device_id) is None:
            raise ApiError(404, "no such device")
        doc = await read_json(request, MAX_EDITOR_BODY)
        text = doc.get("text")
        checked = await editor.validate({"text": text, "name": doc.get("name", "profile.yaml")})
        if not checked["ok"]:  # the console's own validator first: nothing is sent
            return JSONResponse(
                {"error": "the profile does not validate", "diagnostics": checked["diagnostics"]}, status_code=422
            )
        try:
            answer = await console.profiles().deploy(device_id, text, session.user)
        except PressError as exc:
            answer = {
                "status": "rejected",
                "reason": exc.reason,
                "detail": exc.detail,
                "errors": [],
                "profile_hash": None,
                "verified": True,
            }
        from pilot.agent.deploy import text_sha256

        record = CommandRecord(
            ts=console.clock(),
            user=session.user,
            device=device_id,
            command="_profile/set",
            value="sha256:" + text_sha256(text)[:16],
            status=answer["status"],
            reason=answer.get("reason") or "",
            detail=str(answer.get("detail") or "")[:200],
        )
        await run_in_threadpool(console.storage.log_command, record)
        return JSONResponse(answer)

    async def not_found(request: Request, exc: Exception) -> Response:
        return _error(404, "not found")

    routes = [
        Route("/", page),
        Route("/login", page),
        Route("/devices/{device}", page),
        Route("/healthz", healthz),
        Route("/api/login", login, methods=["POST"]),
        Route("/auth/link", link),
        Route("/api/logout", logout, methods=["POST"]),
        Route("/api/session", session),
        Route("/api/fleet", fleet),
        Route("/api/devices/{device}", device),
        Route("/api/devices/{device}/history/{key}", history),
        Route("/api/devices/{device}/commands/{command}", press, methods=["POST"]),
        Route("/api/events", events),
        Route("/api/stats", stats),
        Route("/editor", page),
        Route("/api/editor/catalog", editor_catalog),
        Route("/api/editor/packs", editor_packs),
        Route("/api/editor/packs/{pack}/{profile}", editor_pack_profile),
        Route("/api/editor/validate", editor_post("validate"), methods=["POST"]),
        Route("/api/editor/form", editor_post("form"), methods=["POST"]),
        Route("/api/editor/apply", editor_post("apply"), methods=["POST"]),
        Route("/api/editor/diff", editor_post("diff"), methods=["POST"]),
        Route("/api/editor/files", editor_files),
        Route("/api/editor/files/{name}", editor_file, methods=["GET", "PUT"]),
        Route("/api/editor/broker-test", editor_broker_test, methods=["POST"]),
        Route("/api/devices/{device}/profile", device_profile),
        Route("/api/devices/{device}/deploy", device_deploy, methods=["POST"]),
    ]
    if (STATIC / "assets").is_dir():
        routes.append(Mount("/assets", app=StaticFiles(directory=STATIC / "assets"), name="assets"))
    # the fleet's JSON is about 1 KB a device and compresses about tenfold; event streams are never buffered for
    # compression (Starlette leaves text/event-stream alone), and the small answers carrying the CSRF token stay
    # under the minimum size, so no secret shares a compressed body with what devices publish
    middleware = [Middleware(GZipMiddleware, minimum_size=2048)]
    if console.config.http.allowed_hosts:  # DNS rebinding: a request naming another host is refused
        middleware.insert(0, Middleware(TrustedHostMiddleware, allowed_hosts=list(console.config.http.allowed_hosts)))
    app = Starlette(routes=routes, exception_handlers={404: not_found}, middleware=middleware)
    return SecurityHeaders(app)


class EventStream(StreamingResponse):
    """A streaming response that calls `closed` however it ends: finished, cancelled, or never started."""

    def __init__(self, content: Any, closed: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.closed = closed

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.closed()


class SecurityHeaders:
    """Adds the CSP and friends to every response, and long caching to content-hashed assets."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        assets = scope.get("path", "").startswith("/assets/")

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend(SECURITY_HEADERS)
                if assets and message.get("status") == 200:
                    headers.append((b"cache-control", b"public, max-age=31536000, immutable"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
