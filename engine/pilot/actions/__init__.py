"""Built-in actions: platform operations that commands, rules and schedules run.

Each action is registered on ACTIONS like a probe: `@ACTIONS.register(name, params=...,
privilege=...)` on a factory `factory(ctx: ActionContext, value, **args) -> list[Call]` that
*plans* the exact calls (see `_base.py`); the agent performs them through `System`, or
reports them in dry-run. An optional `state=` reader publishes the current state back.
"""

from pilot.actions._base import ActionContext, ActionError, Call, Outcome, System, Unsupported

__all__ = ["ActionContext", "ActionError", "Call", "Outcome", "System", "Unsupported"]
