"""The editor as the console's routes use it: one object per console, made on the first editor request.

Importing this module loads the compiler (pilot.profile, ruamel, jsonschema); app.py imports it only when
an editor route is asked for, so a console nobody opens the editor on stays as small as before.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pilot.agent.brokercheck import TlsOptions, check_broker
from pilot.console.editor import EditorError, catalog, text
from pilot.console.editor.files import ProfilesDir
from pilot.console.editor.runner import RateLimit, Runner
from pilot.profile import loader

HOST = re.compile(r"[A-Za-z0-9._:\-\[\]%]{1,253}")
BROKER_TIMEOUT_S = 5.0


class EditorService:
    def __init__(self, profiles_dir: Path | None, *, timeout: float = 10.0) -> None:
        self.runner = Runner(workers=2, queue=4, timeout=timeout)
        self.broker_runner = Runner(workers=2, queue=2, timeout=BROKER_TIMEOUT_S + 10.0)
        self.broker_limit = RateLimit(in_flight=1, per_minute=10)
        self.files = ProfilesDir(profiles_dir)

    # the work, each on the editor's own bounded pool
    async def catalog(self) -> dict[str, Any]:
        return await self.runner.run(catalog.catalog)

    async def packs(self) -> dict[str, Any]:
        return await self.runner.run(catalog.pack_list)

    async def pack_profile(self, pack: str, profile: str) -> dict[str, Any]:
        return await self.runner.run(catalog.pack_profile, pack, profile)

    async def validate(self, doc: dict[str, Any]) -> dict[str, Any]:
        return await self.runner.run(text.validate, doc.get("text"), doc.get("name", "profile.yaml"))

    async def form(self, doc: dict[str, Any]) -> dict[str, Any]:
        return await self.runner.run(text.form, doc.get("text"))

    async def apply(self, doc: dict[str, Any]) -> dict[str, Any]:
        return await self.runner.run(text.apply, doc.get("text"), doc.get("edits", []))

    async def diff(self, doc: dict[str, Any]) -> dict[str, Any]:
        return await self.runner.run(text.diff, doc.get("old"), doc.get("new"), doc.get("name", "profile.yaml"))

    async def file_list(self) -> dict[str, Any]:
        return await self.runner.run(self.files.listing)

    async def file_read(self, name: str) -> dict[str, Any]:
        return await self.runner.run(self.files.read, name)

    async def file_save(self, name: str, doc: dict[str, Any]) -> dict[str, Any]:
        return await self.runner.run(self.files.save, name, doc.get("text"), doc.get("base_sha256"))

    async def broker_test(self, user: str, doc: dict[str, Any]) -> dict[str, Any]:
        host, port, tls = await self.runner.run(broker_settings, doc)
        self.broker_limit.begin(user)
        try:
            result = await self.broker_runner.run(_check, host, port, tls)
        finally:
            self.broker_limit.end(user)
        return {"ok": result.ok, "kind": result.kind, "summary": result.summary, "advice": result.advice}


def _check(host: str, port: int, tls: bool) -> Any:
    return check_broker(host, port, tls=TlsOptions() if tls else None, timeout=BROKER_TIMEOUT_S)


def broker_settings(doc: dict[str, Any]) -> tuple[str, int, bool]:
    """(host, port, tls) from the request, or from the `mqtt` of the profile text it carries. Only the
    address and TLS are taken: a profile's CA, client certificate and password files are paths on the
    device, which the console does not read on its own host."""
    if "text" in doc:
        raw = text.encoded(doc["text"])
        parsed, diags = loader.load_text("profile.yaml", raw)
        if parsed is None:
            d = diags[0]
            raise EditorError(422, f"{d.line}:{d.col}: {d.message}")
        mqtt = parsed.data.get("mqtt") if isinstance(parsed.data, dict) else None
        mqtt = mqtt if isinstance(mqtt, dict) else {}
        host, port, tls = mqtt.get("host"), mqtt.get("port"), mqtt.get("tls") not in (None, False)
        if host is None:
            raise EditorError(422, "the profile names no broker (mqtt.host); the agent would start a trial broker")
    else:
        host, port, tls = doc.get("host"), doc.get("port"), doc.get("tls", False)
    if not isinstance(host, str) or not HOST.fullmatch(host):
        raise EditorError(400, "host is a host name or address")
    if not isinstance(tls, bool):
        raise EditorError(400, "tls is true or false")
    if port is None:
        port = 8883 if tls else 1883
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise EditorError(400, "port is a whole number from 1 to 65535")
    return host, port, tls
