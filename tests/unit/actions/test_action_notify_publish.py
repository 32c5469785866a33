"""notify.desktop (notify-send argv) and mqtt.publish (a publish Call)."""

from __future__ import annotations

import pytest

from pilot.actions import ActionError, Call, Unsupported, notify, publish
from pilot.registry import ACTIONS

SESSION = {
    "DISPLAY": ":0",
    "DBUS_SESSION_BUS_ADDRESS": "unix:path=/run/user/1000/bus",
    "XDG_RUNTIME_DIR": "/run/user/1000",
    "PATH": "/usr/bin",
    "HOME": "/home/a",
}
ENV = (
    ("DBUS_SESSION_BUS_ADDRESS", "unix:path=/run/user/1000/bus"),
    ("DISPLAY", ":0"),
    ("PATH", "/usr/bin"),
    ("XDG_RUNTIME_DIR", "/run/user/1000"),
)


def notify_call(*argv: str) -> list[Call]:
    return [Call(kind="exec", argv=("notify-send",) + argv, timeout=10.0, env=ENV)]


def test_button_with_message(make_ctx) -> None:
    ctx = make_ctx(tools=["notify-send"], environ=SESSION)
    assert notify.desktop(ctx, "PRESS", title="Backup", message="Backup finished", urgency="low") == notify_call(
        "--urgency=low", "--app-name=Pilot", "--", "Backup", "Backup finished"
    )


def test_text_value_is_the_message_or_fills_the_template(make_ctx) -> None:
    ctx = make_ctx(tools=["notify-send"], environ=SESSION)
    assert notify.desktop(ctx, "-- dinner is ready") == notify_call(
        "--urgency=normal", "--app-name=Pilot", "--", "Pilot", "-- dinner is ready"
    )
    assert notify.desktop(
        ctx, "42", message="Answer: {value}", icon="dialog-information", urgency="critical"
    ) == notify_call("--urgency=critical", "--app-name=Pilot", "--icon=dialog-information", "--", "Pilot", "Answer: 42")


def test_notify_refusals(make_ctx) -> None:
    ctx = make_ctx(tools=["notify-send"], environ=SESSION)
    with pytest.raises(ActionError, match="needs `message`"):
        notify.desktop(ctx, "PRESS")
    with pytest.raises(ActionError, match="urgency must be low, normal or critical"):
        notify.desktop(ctx, "hi", urgency="urgent")
    with pytest.raises(ActionError, match="message is empty"):
        notify.desktop(ctx, "   ")


def test_notify_unsupported(make_ctx) -> None:
    entry = ACTIONS.get("notify.desktop")
    no_tool = make_ctx(tools=[], environ=SESSION)
    no_session = make_ctx(tools=["notify-send"], environ={"PATH": "/usr/bin"})
    with pytest.raises(Unsupported, match="notify-send is not installed"):
        notify.desktop(no_tool, "hi")
    with pytest.raises(Unsupported, match="no desktop session here"):
        notify.desktop(no_session, "hi")
    assert "not installed" in entry.available(no_tool)
    assert "no desktop session" in entry.available(no_session)
    assert entry.available(make_ctx(tools=["notify-send"], environ=SESSION)) is None


def test_publish_fills_the_value(make_ctx) -> None:
    ctx = make_ctx()
    assert publish.publish(ctx, "ON", topic="home/office/pc", payload='{"state": "{value}"}', retain=True) == [
        Call(kind="publish", topic="home/office/pc", data='{"state": "ON"}', retain=True)
    ]
    assert publish.publish(ctx, 21.0, topic="t") == [Call(kind="publish", topic="t", data="21")]
    assert publish.publish(ctx, 0.5, topic="t") == [Call(kind="publish", topic="t", data="0.5")]
    assert publish.publish(ctx, "PRESS", topic="t", payload="pressed") == [
        Call(kind="publish", topic="t", data="pressed")
    ]


def test_publish_template_is_not_str_format(make_ctx) -> None:
    calls = publish.publish(make_ctx(), "x", topic="t", payload="{value.__class__} {0} {value}")
    assert calls[0].data == "{value.__class__} {0} x"


def test_publish_refuses_wildcards_and_junk(make_ctx) -> None:
    ctx = make_ctx()
    for topic in ("home/+/pc", "home/#", ""):
        with pytest.raises(ActionError):
            publish.publish(ctx, "ON", topic=topic)
    with pytest.raises(ActionError, match="not a valid MQTT topic"):
        publish.publish(ctx, "ON", topic="a\x00b")
    with pytest.raises(ActionError, match="not a finite number"):
        publish.publish(ctx, float("nan"), topic="t")
