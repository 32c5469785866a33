"""mqtt.publish: publish an MQTT message through the agent's own connection.

(The module is `publish.py`, not `mqtt.py`, so it is never confused with `pilot.mqtt`.)
The payload is a template in which the literal text `{value}` is replaced by the command's
value; nothing else in it is interpreted (no str.format, so no attribute lookups). A topic
is passed on as written: the agent decides how a relative topic maps under its prefix.
"""

from __future__ import annotations

from typing import Any

from pilot.actions._base import ActionContext, ActionError, Call
from pilot.actions._common import value_text
from pilot.params import params, prop
from pilot.registry import ACTIONS

MAX_TOPIC = 65535  # MQTT's own limit, in UTF-8 bytes


@ACTIONS.register(
    "mqtt.publish",
    params=params(
        {
            "topic": prop(
                "string",
                "Topic to publish to (no + or # wildcards); relative topics live under this device's prefix.",
                minLength=1,
                pattern=r"^[^+#\u0000]+$",
            ),
            "payload": prop(
                "string",
                "Payload template; `{value}` is replaced by the command's value.",
                default="{value}",
                **{"x-template": ["value"]},  # the placeholders it fills in: `pilot validate` checks them
            ),
            "retain": prop("boolean", "Ask the broker to retain the message.", default=False),
        },
        required=("topic",),
        examples=[{"topic": "home/office/pc", "payload": "{value}", "retain": True}],
    ),
    privilege=None,
    platforms=("button", "switch", "number", "select", "text"),
)
def publish(
    ctx: ActionContext, value: Any = None, *, topic: str, payload: str = "{value}", retain: bool = False
) -> list[Call]:
    """Publish an MQTT message whose payload can carry the command's value."""
    if not isinstance(topic, str) or not topic:
        raise ActionError("mqtt.publish needs a topic")
    if "+" in topic or "#" in topic:
        raise ActionError("a topic to publish to cannot contain the wildcards + or #")
    if "\x00" in topic or len(topic.encode("utf-8")) > MAX_TOPIC:
        raise ActionError("the topic is not a valid MQTT topic")
    if not isinstance(payload, str):
        raise ActionError("payload must be text")
    return [Call(kind="publish", topic=topic, data=payload.replace("{value}", value_text(value)), retain=bool(retain))]
