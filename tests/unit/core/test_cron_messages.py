"""pilot.cron.problem: what is wrong with a cron expression, in words a crontab user knows."""

from __future__ import annotations

import pytest

from pilot.cron import problem


@pytest.mark.parametrize(
    "expression, says",
    [
        ("0 8 * *", "cron takes 5 fields (minute hour day month weekday), got 4"),
        ("0 30 23 * * *", "got 6; there is no seconds or year field"),
        ("", "the cron expression is empty"),
        ("@daily", "write the 5 fields: '0 0 * * *'"),
        ("@reboot", "'@reboot' is not a cron expression"),
        ("61 23 * * *", "minute 61 is out of range: write 0-59"),
        ("0 25 * * *", "hour 25 is out of range: write 0-23"),
        ("0 8 0 * *", "day 0 is out of range: write 1-31"),
        ("0 8 * 13 *", "month 13 is out of range: write 1-12 or jan-dec"),
        ("0 8 * * 8", "weekday 8 is out of range"),
        ("5-1 8 * * *", "the minute range '5-1' runs backwards"),
        ("0 8 * * fri-mon", "the weekday range 'fri-mon' runs backwards"),
        ("*/0 8 * * *", "the step in '*/0' (minute field) must be at least 1"),
        ("*/x 8 * * *", "'/x' in the minute field is not a step"),
        ("0 8 * jan-foo *", "'foo' is not a month"),
        ("0 8 L * *", "'L' is not a day"),
        ("0 8 * * x", "'x' is not a weekday"),
        ("0 8 1,,2 * *", "the day field '1,,2' has an empty item"),
        ("0 8 31 2 *", "day 31 never comes in February: this schedule would never run"),
        ("0 8 30,31 feb *", "this schedule would never run"),
    ],
)
def test_malformed_cron_is_explained(expression: str, says: str) -> None:
    message = problem(expression)
    assert message is not None and says in message, message


@pytest.mark.parametrize(
    "expression",
    ["30 23 * * 1-5", "*/15 * * * *", "0 8 * JAN-mar MON", "0 8 29 2 *", "0 8 last * *", "0 8 * * 0-7", "0 8 * * 1/2"],
)
def test_valid_cron_has_no_problem(expression: str) -> None:
    assert problem(expression) is None
