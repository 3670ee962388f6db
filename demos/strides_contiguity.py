"""strides-contiguity: a tensor is a view over flat storage; a transpose swaps strides, and
view() fails on strides it cannot express while reshape() copies when it must."""

from __future__ import annotations

import torch

from tensorscope.demos._scenario import Observation, Scenario

LESSON = """\
**Shape, strides, offset, storage.** A tensor is a window on a flat block of memory. The
strides say how many storage elements to skip to move one step along each dimension:
a 3×4 row-major tensor has strides (4, 1). `x.T` copies nothing — it swaps the strides to
(1, 4). That tensor is *not contiguous*: reading it row by row jumps around in storage.

`view()` only re-labels the same storage, so it refuses shapes the strides cannot express
(`x.T.view(-1)` fails). `reshape()` views when it can and copies when it must;
`.contiguous()` makes the row-major copy explicitly. Open the Storage screen to see each
element's place in storage.
"""

CODE = """\
x = torch.arange(12.).reshape(3, 4)   # strides (4, 1)
xt = x.T                              # strides (1, 4): same storage
flat = xt.view(-1)                    # RuntimeError: view size is not compatible ...
"""

FIXED = """\
x = torch.arange(12.).reshape(3, 4)   # strides (4, 1)
xt = x.T                              # strides (1, 4): same storage
flat = xt.reshape(-1)                 # copies, because it must
flat2 = xt.contiguous().view(-1)      # the same, spelled out
"""

STATEMENTS = ["x = torch.arange(12.).reshape(3, 4)", "xt = x.T", "xc = xt.contiguous()",
              "flat = xt.reshape(-1)"]


def measure(fixed: bool) -> Observation:
    x = torch.arange(12.0).reshape(3, 4)
    xt = x.T
    errors = []
    facts = {
        "x": {"shape": list(x.shape), "stride": list(x.stride()), "contiguous": x.is_contiguous()},
        "x.T": {"shape": list(xt.shape), "stride": list(xt.stride()),
                "contiguous": xt.is_contiguous(),
                "shares_storage_with_x": xt.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()},
    }
    if fixed:
        flat = xt.reshape(-1)
        xc = xt.contiguous()
        facts["reshape_copied"] = flat.untyped_storage().data_ptr() != x.untyped_storage().data_ptr()
        facts["x.T.contiguous()"] = {"stride": list(xc.stride()), "contiguous": xc.is_contiguous()}
        facts["reshape_of_contiguous_x_copied"] = (
            x.reshape(-1).untyped_storage().data_ptr() != x.untyped_storage().data_ptr())
        facts["flat"] = flat.tolist()
    else:
        try:
            xt.view(-1)
            facts["view_error"] = None
        except RuntimeError as exc:
            errors.append(exc)
            facts["view_error"] = str(exc).splitlines()[0][:160]
    try:
        from tensorscope.storage import layout_of

        lay = layout_of(xt)
        facts["layout_of_x.T"] = {k: getattr(lay, k) for k in ("shape", "strides", "offset")
                                  if hasattr(lay, k)}
    except ImportError:
        pass  # the storage screen's core lands separately; torch's own answers stand alone
    return Observation(facts, errors=errors)


def _context() -> dict:
    from tensorscope.evaluate import base_namespace

    return {"namespace": base_namespace(), "statements": list(STATEMENTS)}


SCENARIO = Scenario(
    name="strides-contiguity", title="Strides and contiguity: view vs reshape vs contiguous",
    lesson=LESSON, code=CODE, fixed_code=FIXED, screens=("storage", "doctor"),
    measure=measure, finding="view-non-contiguous", context=_context,
)
