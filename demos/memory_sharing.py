"""memory-sharing: slices are views, so writing through one changes the original; clone()
makes an independent copy."""

from __future__ import annotations

import torch

from tensorscope.demos._scenario import Observation, Scenario

LESSON = """\
**Slices share storage.** `a[:2]` is a view: a new shape and offset over `a`'s own memory.
Write through it and `a` changes — no copy was ever made. That is what keeps slicing
cheap, and what surprises code that "saved" a slice and then modified it.

`clone()` allocates new storage: writes to the clone leave `a` alone. On the Storage
screen, `a` and `b` light up the same cells; `c` has its own.
"""

CODE = """\
a = torch.ones(4)
b = a[:2]            # a view: same storage as a
b[0] = 99.0          # a is now [99, 1, 1, 1]
"""

FIXED = """\
a = torch.ones(4)
c = a[:2].clone()    # its own storage
c[0] = 99.0          # a stays [1, 1, 1, 1]
"""

STATEMENTS = ["a = torch.ones(4)", "b = a[:2]", "b[0] = 99.0", "c = a[:2].clone()", "c[0] = -1.0"]


def measure(fixed: bool) -> Observation:
    a = torch.ones(4)
    if fixed:
        c = a[:2].clone()
        c[0] = 99.0
        facts = {"a_after_write": a.tolist(), "copy": c.tolist(),
                 "same_storage": c.untyped_storage().data_ptr() == a.untyped_storage().data_ptr()}
    else:
        b = a[:2]
        b[0] = 99.0
        facts = {"a_after_write": a.tolist(), "view": b.tolist(),
                 "same_storage": b.untyped_storage().data_ptr() == a.untyped_storage().data_ptr(),
                 "view_offset": b.storage_offset(), "a_version": a._version}
    return Observation(facts)


def _context() -> dict:
    from tensorscope.evaluate import base_namespace

    return {"namespace": base_namespace(), "statements": list(STATEMENTS)}


SCENARIO = Scenario(
    name="memory-sharing", title="Views share memory: slices write through, clone() does not",
    lesson=LESSON, code=CODE, fixed_code=FIXED, screens=("storage",),
    measure=measure, finding=None, context=_context,
)
