"""tensorscope: PyTorch internals, made visible.

The library half of tensorscope. It depends on torch and the standard library only (plus
graphviz for image export) and never imports textual or rich, so it can run inside a
user's training process, a test, or a notebook.

Public names are loaded lazily so that ``import tensorscope`` (and the CLI's ``--help``)
stays fast and does not pull in torch before it is needed::

    >>> import tensorscope
    >>> lay = tensorscope.layout_of(torch.arange(6.).reshape(2, 3).T)   # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> "module:attribute"; resolved on first access (PEP 562).
_LAZY = {
    "UserError": "tensorscope.errors:UserError",
    "layout_of": "tensorscope.storage:layout_of",
    "TensorLayout": "tensorscope.storage:TensorLayout",
    "watch": "tensorscope.watch:watch",
}


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'tensorscope' has no attribute {name!r}")
    module_name, attr = target.split(":")
    value = getattr(importlib.import_module(module_name), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
