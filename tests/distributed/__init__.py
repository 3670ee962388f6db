"""Tests of multi-rank runs (gloo on CPU).

GLOO_TEARDOWN_RERUN: gloo can abort a rank while the process exits, after
destroy_process_group() ("terminate called without an active exception", SIGABRT). It is a
known PyTorch trap, seen here about once in a few dozen launches with or without
tensorscope. Tests that launch ranks are rerun (at most twice) only when a failure carries
that signature; every other failure fails at once.
"""

import pytest

GLOO_TEARDOWN_RERUN = pytest.mark.flaky(
    reruns=2,
    only_rerun=["terminate called without an active exception", r"SIGABRT", r"exitcode: -6"],
)
