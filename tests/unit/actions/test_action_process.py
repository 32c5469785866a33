"""process.run: argv planned exactly, never a shell, and the value only through a validated placeholder."""

from __future__ import annotations

import pytest

from pilot.actions import ActionError, Call, process
from pilot.registry import ACTIONS

ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/home/a", "MQTT_PASSWORD": "hunter2"}


def test_fixed_argv_with_defaults(make_ctx) -> None:
    ctx = make_ctx(environ=ENV)
    assert process.run(ctx, "PRESS", argv=["/usr/local/bin/backup.sh", "--quick"]) == [
        Call(
            kind="exec",
            argv=("/usr/local/bin/backup.sh", "--quick"),
            timeout=30.0,
            env=(("LANG", "C.UTF-8"), ("PATH", "/usr/bin:/bin")),
        )
    ]


def test_all_arguments(make_ctx) -> None:
    ctx = make_ctx(environ=ENV)
    calls = process.run(
        ctx,
        "PRESS",
        argv=["rsync", "-a", "/src", "/dst"],
        timeout="10m",
        cwd="/srv",
        env={"RSYNC_RSH": "ssh -i key"},
        env_allow=["HOME", "NOT_SET"],
        capture=True,
    )
    assert calls == [
        Call(
            kind="exec",
            argv=("rsync", "-a", "/src", "/dst"),
            timeout=600.0,
            cwd="/srv",
            env=(("HOME", "/home/a"), ("RSYNC_RSH", "ssh -i key")),
            capture=True,
        )
    ]


def test_the_agents_secrets_never_reach_the_program(make_ctx) -> None:
    call = process.run(make_ctx(environ=ENV), argv=["env"])[0]
    assert "MQTT_PASSWORD" not in dict(call.env)


def test_value_reaches_argv_only_through_the_placeholder(make_ctx) -> None:
    ctx = make_ctx(environ={})
    args = {
        "argv": ["/usr/bin/pactl", "set-sink-volume", "@DEFAULT_SINK@", "{value}%"],
        "value_arg": "{value}",
        "value_pattern": "^[0-9]{1,3}$",
    }
    assert process.run(ctx, 40.0, **args)[0].argv == ("/usr/bin/pactl", "set-sink-volume", "@DEFAULT_SINK@", "40%")
    assert process.run(ctx, "7", **args)[0].argv[-1] == "7%"
    # Without value_arg the value is ignored: "{value}" stays literal text.
    assert process.run(ctx, "hello", argv=["/bin/echo", "{value}"])[0].argv == ("/bin/echo", "{value}")
    # The default pattern.
    assert process.run(ctx, "eco-mode:2", argv=["tool", "--mode={v}"], value_arg="{v}")[0].argv == (
        "tool",
        "--mode=eco-mode:2",
    )


@pytest.mark.parametrize("value", ["; rm -rf /", "$(reboot)", "a b", "x\n", "`id`", "a" * 65, "", "ä"])
def test_values_that_do_not_match_the_pattern_are_refused(make_ctx, value) -> None:
    with pytest.raises(ActionError, match=r"does not match value_pattern \^\[A-Za-z0-9_\.:-\]\{1,64\}\$"):
        process.run(make_ctx(), value, argv=["/usr/bin/tool", "{value}"], value_arg="{value}")


def test_a_refused_value_is_not_echoed(make_ctx) -> None:
    with pytest.raises(ActionError) as err:
        process.run(make_ctx(), "secret stuff", argv=["/usr/bin/tool", "{value}"], value_arg="{value}")
    assert "secret" not in str(err.value)


def test_a_value_cannot_become_an_option(make_ctx) -> None:
    ctx = make_ctx()
    with pytest.raises(ActionError, match="may not start with '-' where it begins an argument"):
        process.run(ctx, "-rf", argv=["/bin/rm", "{value}"], value_arg="{value}")
    # After "--" or inside --option=..., a leading '-' is only data.
    assert process.run(ctx, "-5", argv=["/usr/bin/tool", "--", "{value}"], value_arg="{value}")[0].argv == (
        "/usr/bin/tool",
        "--",
        "-5",
    )
    assert process.run(ctx, "-5", argv=["/usr/bin/tool", "--offset={value}"], value_arg="{value}")[0].argv == (
        "/usr/bin/tool",
        "--offset=-5",
    )


def test_placeholder_mistakes(make_ctx) -> None:
    ctx = make_ctx()
    with pytest.raises(ActionError, match="cannot choose the program"):
        process.run(ctx, "ls", argv=["{value}"], value_arg="{value}")
    with pytest.raises(ActionError, match="appears in no argv element"):
        process.run(ctx, "x", argv=["/bin/true"], value_arg="{value}")
    with pytest.raises(ActionError, match="needs a value"):
        process.run(ctx, None, argv=["/bin/echo", "{value}"], value_arg="{value}")
    with pytest.raises(ActionError, match="not a valid regular expression"):
        process.run(ctx, "x", argv=["/bin/echo", "{value}"], value_arg="{value}", value_pattern="([")


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "non-empty list"),
        ("ls -l", "non-empty list"),
        (["./run.sh"], "absolute path or a bare program name"),
        (["bin/run"], "absolute path or a bare program name"),
        ([""], "must name a program"),
        (["/bin/echo", "a\x00b"], "NUL byte"),
        (["/bin/echo", 3], "non-empty list of strings"),
    ],
)
def test_bad_argv(make_ctx, argv, message) -> None:
    with pytest.raises(ActionError, match=message):
        process.run(make_ctx(), argv=argv)


def test_bad_timeout_cwd_env(make_ctx) -> None:
    ctx = make_ctx()
    with pytest.raises(ActionError, match="not a duration"):
        process.run(ctx, argv=["/bin/true"], timeout="forever")
    with pytest.raises(ActionError, match="longer than zero"):
        process.run(ctx, argv=["/bin/true"], timeout="0s")
    with pytest.raises(ActionError, match="cwd must be an absolute path"):
        process.run(ctx, argv=["/bin/true"], cwd="tmp")
    with pytest.raises(ActionError, match="invalid variable name"):
        process.run(ctx, argv=["/bin/true"], env={"A=B": "x"})
    with pytest.raises(ActionError, match="invalid variable name"):
        process.run(ctx, argv=["/bin/true"], env_allow=["PATH;"])


def test_never_a_shell(make_ctx, monkeypatch) -> None:
    """What process.run plans reaches Popen as a list, without shell=True, even with shell syntax in it."""
    import subprocess

    from pilot.actions import System

    seen = {}

    class FakePopen:
        def __init__(self, args, **kwargs):
            seen["args"], seen["kwargs"] = args, kwargs
            self.pid, self.returncode = 999_999, 0

        def communicate(self, timeout=None):
            return b"", None

    monkeypatch.setattr(subprocess, "Popen", FakePopen)
    call = process.run(make_ctx(), "x", argv=["/bin/echo", "$(id); {value} | cat"], value_arg="{value}")[0]
    System().perform(call)
    assert seen["args"] == ["/bin/echo", "$(id); x | cat"]
    assert seen["kwargs"].get("shell", False) is False
    assert "executable" not in seen["kwargs"]  # nothing swaps the program named in argv[0]


def test_shell_syntax_reaches_the_program_literally(make_ctx, monkeypatch) -> None:
    """The lowest layer: the argv handed to the kernel's exec is the planned list, and a real
    /bin/echo prints the metacharacters back unexpanded (a shell would run `id` and the pipe)."""
    import subprocess

    from pilot.actions import System

    execs = []
    real_fork_exec = subprocess._fork_exec

    def fork_exec(args, executables, *rest):
        execs.append((list(args), list(executables)))
        return real_fork_exec(args, executables, *rest)

    monkeypatch.setattr(subprocess, "_fork_exec", fork_exec)
    monkeypatch.setattr(subprocess, "_USE_POSIX_SPAWN", False)  # every child goes through fork_exec
    text = "$(id); `id` && x | cat > /dev/null; *"
    call = process.run(make_ctx(environ={"PATH": "/usr/bin:/bin"}), "x", argv=["/bin/echo", text], capture=True)[0]
    outcome = System().perform(call)
    assert execs == [(["/bin/echo", text], [b"/bin/echo"])]
    assert (outcome.returncode, outcome.output) == (0, text + "\n")


def test_windows_paths(make_ctx) -> None:
    ctx = make_ctx(platform="windows")
    assert process.run(ctx, argv=["C:\\Tools\\backup.exe"])[0].argv == ("C:\\Tools\\backup.exe",)
    with pytest.raises(ActionError, match="not a relative path"):
        process.run(ctx, argv=["tools\\backup.exe"])


def test_available(make_ctx) -> None:
    available = ACTIONS.get("process.run").available
    assert available(make_ctx(tools=["rsync"]), argv=["rsync"]) is None
    assert available(make_ctx(), argv=["rsync"]) == "rsync is not on PATH"
    assert available(make_ctx(), argv=["/bin/echo"]) is None
    assert "does not exist or is not executable" in available(make_ctx(), argv=["/nonexistent/tool"])
