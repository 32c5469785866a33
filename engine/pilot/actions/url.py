"""url.open: open a web page in the desktop's browser (xdg-open, macOS `open`, Windows' URL handler).

Only http and https URLs are opened, from the profile (`url`) or, for a text command, the
value. A URL comes from MQTT at worst, so it is checked before it is planned: a scheme other
than http/https (javascript:, file:, data:, a registered app handler) is refused, and so are
control, invisible and bidi characters, whitespace, a user name or password before the host
("https://bank.example@evil.example" shows one host and opens another), a missing host and
anything over MAX_URL characters. The URL is one argv element after the tool, never parsed by
a shell: on Windows `rundll32 url.dll,FileProtocolHandler URL` rather than `cmd /c start`,
whose parser would read `&` in a query string as a second command.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pilot.actions._base import ActionContext, ActionError, Call, Unsupported
from pilot.actions._common import SESSION_ENV, env_from, exec_call
from pilot.params import params, prop
from pilot.registry import ACTIONS

MAX_URL = 2048
# printable ASCII only, no spaces (IDNs in punycode); the lookahead because `$` also matches before a final "\n"
URL_PATTERN = r"^(?!.*\n)[Hh][Tt][Tt][Pp][Ss]?://[!-~]+$"
_HOST_PATTERN = r"^[A-Za-z0-9.-]{1,253}$"


def check_url(url: Any, hosts: list[str] | None = None) -> str:
    """The URL if it is one url.open may open; otherwise an ActionError that says why."""
    from pilot.escaping import UNSAFE

    if not isinstance(url, str) or not url:
        raise ActionError("url.open needs a URL (in `url`, or as the command's text value)")
    if len(url) > MAX_URL:
        raise ActionError(f"the URL is {len(url)} characters long; at most {MAX_URL} are opened")
    if UNSAFE.search(url) or any(ch.isspace() for ch in url):
        raise ActionError("the URL contains spaces, control or invisible characters")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as exc:
        raise ActionError(f"not a valid URL: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ActionError(f"only http and https URLs are opened, not {parts.scheme[:20] or 'a relative one'!r}")
    if not url.isascii():
        raise ActionError("the URL has characters outside ASCII; write the host in punycode and %-encode the rest")
    if not host:
        raise ActionError("the URL names no host")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ActionError("the URL has a user name before its host (user@host), which can disguise the host")
    if hosts and host.lower().rstrip(".") not in {h.lower().rstrip(".") for h in hosts}:
        raise ActionError(f"the URL's host {host[:80]!r} is not one of the hosts this command may open")
    return url


def _tool(ctx: ActionContext) -> tuple[str, ...] | None:
    if ctx.platform == "windows":
        return ("rundll32.exe", "url.dll,FileProtocolHandler")
    if ctx.platform == "darwin":
        return ("open",) if ctx.which("open") else None
    return ("xdg-open",) if ctx.which("xdg-open") else None


def _available(ctx: ActionContext, **_: Any) -> str | None:
    if _tool(ctx) is None:
        if ctx.platform == "darwin":
            return "open is not found on this Mac"
        return "xdg-open is not installed (xdg-utils)"
    if ctx.platform not in ("windows", "darwin") and not any(
        ctx.environ.get(k) for k in ("DISPLAY", "WAYLAND_DISPLAY", "DBUS_SESSION_BUS_ADDRESS")
    ):
        return "no desktop session here (no DISPLAY, WAYLAND_DISPLAY or DBUS_SESSION_BUS_ADDRESS)"
    return None


@ACTIONS.register(
    "url.open",
    params=params(
        {
            "url": prop(
                "string",
                "The http or https URL to open. Leave out to open the command's value (a text command).",
                minLength=8,
                maxLength=MAX_URL,
                pattern=URL_PATTERN,
                **{"x-error": "only an http:// or https:// URL of printable ASCII characters without spaces"},
            ),
            "hosts": prop(
                "array",
                "For a URL from the value: the host names it may have (exactly; no wildcards).",
                items={"type": "string", "pattern": _HOST_PATTERN},
                minItems=1,
                maxItems=64,
            ),
        },
        examples=[{"url": "https://www.home-assistant.io/"}],
    ),
    privilege=None,
    platforms=("button", "text"),
    available=_available,
)
def open_url(
    ctx: ActionContext, value: Any = None, *, url: str | None = None, hosts: list[str] | None = None
) -> list[Call]:
    """Open a web page in the desktop's browser."""
    reason = _available(ctx)
    if reason:
        raise Unsupported(reason)
    if url is not None:
        target = check_url(url)
    elif value in (None, "PRESS"):
        raise ActionError("url.open needs `url` in args, or a text value holding the URL")
    else:
        target = check_url(value, hosts)
    tool = _tool(ctx) or ()
    env = None if ctx.platform == "windows" else env_from(ctx, SESSION_ENV)
    return [exec_call([*tool, target], timeout=15.0, env=env)]
