"""The tests' own wait helper (tests/helpers.py): what it returns, when it gives up."""

import itertools
import time

import pytest

from tests.helpers import wait_until


def test_wait_until_returns_the_first_truthy_value():
    values = iter([0, None, [], [3]])
    assert wait_until(lambda: next(values), timeout=5, interval=0, message="a list") == [3]


def test_wait_until_names_what_it_awaited_and_the_last_value():
    with pytest.raises(AssertionError, match=r"waiting for the answer; last value: 0\nlogs"):
        wait_until(
            lambda: 0, timeout=0.05, interval=0.01, message="the answer", details=lambda: "logs"
        )


def test_progress_restarts_the_timeout_and_a_stall_ends_the_wait():
    ticks = itertools.count()
    started = time.monotonic()
    # progress every poll for 0.3 s: a 0.1 s timeout never runs out meanwhile
    assert wait_until(
        lambda: time.monotonic() - started > 0.3,
        timeout=0.1,
        interval=0.01,
        progress=lambda: next(ticks),
        message="0.3 s",
    )
    with pytest.raises(AssertionError, match=r"no progress from 'stuck'"):
        wait_until(lambda: False, timeout=0.1, interval=0.01, progress=lambda: "stuck", message="x")
