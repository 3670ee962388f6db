"""Shared pieces of the in-process tests of run's instrumentation (tests/unit/test_runner*.py)."""

from __future__ import annotations

import contextlib
from typing import Iterator

from torch.nn.modules import module as nn_module
from torch.optim import optimizer as optim

from tensorscope.runner import Instrumentation


def global_hook_counts() -> tuple[int, ...]:
    """Global module forward pre/post and optimizer pre/post hooks installed right now."""
    return (len(nn_module._global_forward_pre_hooks), len(nn_module._global_forward_hooks),
            len(optim._global_optimizer_pre_hooks), len(optim._global_optimizer_post_hooks))


@contextlib.contextmanager
def instrumented(tmp_path, detail: str = "sampled",
                 later: bool = True) -> Iterator[tuple[Instrumentation, list[dict]]]:
    """run's instrumentation around the block; yields (instrumentation, events).

    ``later``: plain steps' events come through ``emit_later`` as under ``tensorscope run``
    (built here at once; the sender builds them on its own thread)."""
    events: list[dict] = []
    instr = Instrumentation(str(tmp_path / "script.py"), events.append, detail=detail,
                            emit_later=(lambda build: events.append(build())) if later else None)
    instr.install()
    try:
        yield instr, events
    finally:
        instr.finish()


def phase(events: list[dict], name: str) -> list[dict]:
    """The step records of one phase ("train" or "eval")."""
    return [e for e in events if e["type"] == "step" and e["phase"] == name]
