"""The wire of a signed profile deploy (`<base>/cmd/_profile/set` and `_profile/get`), both ends.

A sender (`pilot deploy`, the console) builds a request with `build_deploy` or `build_get` and
judges each message on `<base>/cmd/_profile/result` with `read_answer`; the agent's side
(pilot.agent.deployer) parses requests with `parse_deploy`. Kept in one small module with no
MQTT in it, so the console and the command line share the exact bytes the agent checks.

Deploy payload (UTF-8 JSON, at most MAX_DEPLOY_BYTES):
    {"envelope": <pilot-cmd-v1 envelope, cmd = "sha256:<hex of the UTF-8 profile text>">,
     "profile": "<the profile YAML text>"}
The envelope is signed for the topic `<base>/cmd/_profile/set`, so it cannot be replayed to any
other command or device, and its `cmd` binds the exact text: a profile swapped in transit is
refused `bad_hash`. A get request is a bare envelope with cmd "get" on `<base>/cmd/_profile/get`.
Answers are pilot-result-v1 signed with the request's key (status, reason, nonce, ts covered);
docs/mqtt.md, "Deploying a profile", lists every field and reason.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from pilot.agent import signing

MAX_DEPLOY_BYTES = 262144  # the whole payload: envelope and profile text
MAX_ERRORS = 20  # diagnostics sent back with `invalid_profile`
HASH_PREFIX = "sha256:"
GET_CMD = "get"
STATUSES = ("ok", "rejected", "rolled_back", "busy", "failed")


def set_topic(base: str) -> str:
    return f"{base}/cmd/_profile/set"


def get_topic(base: str) -> str:
    return f"{base}/cmd/_profile/get"


def result_topic(base: str) -> str:
    return f"{base}/cmd/_profile/result"


def state_topic(base: str) -> str:
    """Retained: the outcome of the last verified deploy attempt (`pilot forget` empties it)."""
    return f"{base}/deploy"


def text_sha256(text: str) -> str:
    """The hex SHA-256 of a profile text's UTF-8 bytes: what the envelope's cmd binds."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Request:
    """One request ready to publish (QoS 1, never retained) and what its answer must echo."""

    topic: str  # the set (or get) topic the envelope is signed for
    payload: bytes
    nonce: str
    kid: str
    op: str  # "set" | "get"
    sha256: str | None = None  # of the profile text (set only)


def build_deploy(
    key: signing.Key,
    device_id: str,
    base: str,
    text: str,
    *,
    by: str | None = None,
    ts: int | None = None,
    nonce: str | None = None,
) -> Request:
    """A signed deploy of `text` to the device `device_id` whose topic base is `base` (`pilot/<id>`).

    `key` is an active signing.Key the device's keyring also holds; `by` (1 to 64 of
    `A-Z a-z 0-9 _ . @ -`) names who deploys, is signed, and appears in the device's audit and in
    its retained `<base>/deploy` state. Raises ValueError when the text has no UTF-8 form, `by` is
    not allowed, or the payload would exceed MAX_DEPLOY_BYTES (the device would refuse it)."""
    if not signing.encodable(text):
        raise ValueError("the profile text has no UTF-8 form (a lone surrogate)")
    digest = text_sha256(text)
    topic = set_topic(base)
    env = signing.sign(key, device_id, topic, HASH_PREFIX + digest, ts=ts, nonce=nonce, by=by)
    payload = json.dumps({"envelope": env, "profile": text}, separators=(",", ":"), ensure_ascii=False).encode()
    if len(payload) > MAX_DEPLOY_BYTES:
        raise ValueError(f"the deploy message would be {len(payload)} bytes; devices accept at most {MAX_DEPLOY_BYTES}")
    return Request(topic, payload, env["nonce"], key.kid, "set", digest)


def build_get(key: signing.Key, device_id: str, base: str, *, by: str | None = None, ts: int | None = None) -> Request:
    """A signed request for the profile text the device runs (answered with it, secrets redacted)."""
    topic = get_topic(base)
    env = signing.sign(key, device_id, topic, GET_CMD, ts=ts, by=by)
    return Request(topic, json.dumps(env, separators=(",", ":")).encode(), env["nonce"], key.kid, "get")


def read_answer(raw: bytes, key: signing.Key, device_id: str, request: Request) -> dict | None:
    """The decoded answer when `raw` (a message on the result topic) answers `request` and carries
    a valid pilot-result-v1 signature with its key; None for anything else (another request's
    answer, a forgery, junk). A `rejected`/`replayed` answer is None too: it means someone sent
    this very envelope again, and the answer to the sender's own request is still to come. Only
    status, reason, nonce and ts are covered by the signature: `errors`, `detail`,
    `profile_hash` and a get's `profile` are as the broker delivered them."""
    if len(raw) > 2 * MAX_DEPLOY_BYTES:
        return None
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(body, dict) or body.get("nonce") != request.nonce or body.get("op", request.op) != request.op:
        return None
    if not signing.verify_result(body, key, device_id, request.topic, request.nonce):
        return None
    if body.get("status") == "rejected" and body.get("reason") == "replayed":
        return None
    return body


# ------------------------------------------------------------------ the agent's parsing


@dataclass(frozen=True)
class Deploy:
    """A deploy payload whose shape is right (nothing verified yet)."""

    envelope: dict
    text: str


def _unique(pairs: list[tuple[str, object]]) -> dict:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate key")
    return dict(pairs)


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def parse_deploy(payload: bytes) -> Deploy:
    """Strict shape: a JSON object with exactly `envelope` (a well-formed pilot-cmd-v1 envelope,
    signing.parse_envelope) and `profile` (text with a UTF-8 form); else Rejected("malformed").
    The size is the caller's to check first (MAX_DEPLOY_BYTES)."""
    try:
        data = json.loads(payload.decode("utf-8"), object_pairs_hook=_unique, parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise signing.Rejected("malformed") from None
    if not isinstance(data, dict) or set(data) != {"envelope", "profile"}:
        raise signing.Rejected("malformed")
    text, env = data["profile"], data["envelope"]
    if not isinstance(text, str) or not signing.encodable(text) or not isinstance(env, dict):
        raise signing.Rejected("malformed")
    try:
        envelope = signing.parse_envelope(json.dumps(env).encode())
    except (ValueError, RecursionError):
        raise signing.Rejected("malformed") from None
    return Deploy(envelope, text)


def binds(envelope: dict, text: str) -> bool:
    """Whether the (verified) envelope's cmd is the SHA-256 of exactly this text."""
    return envelope.get("cmd") == HASH_PREFIX + text_sha256(text)
