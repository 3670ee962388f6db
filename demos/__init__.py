"""tensorscope.demos: one module per scenario of the syllabus (lessons and classic bugs).

``catalogue()`` lists them in teaching order; ``get(name)`` returns one. Scenarios double
as test fixtures: tests import them and check what they measure and what the doctor says.
"""

from __future__ import annotations

import importlib

from tensorscope.errors import UserError

# name -> module, in the order a reader meets them in the syllabus.
_MODULES = {
    "missing-zero-grad": "missing_zero_grad",
    "grad-accumulation": "grad_accumulation",
    "strides-contiguity": "strides_contiguity",
    "memory-sharing": "memory_sharing",
    "retain-graph-detach": "retain_graph_detach",
    "inplace-autograd": "inplace_autograd",
    "eval-no-grad": "eval_no_grad",
    "item-sync": "item_sync",
    "train-eval-mode": "train_eval_mode",
    "device-mix": "device_mix",
    "amp-scaler": "amp_scaler",
    "checkpoint-resume": "checkpoint_resume",
    "glu-layer": "glu_layer",
    "init-grad-norms": "init_grad_norms",
    "lr-finder": "lr_finder",
    "custom-gelu": "custom_gelu",
    "dataloader-throughput": "dataloader_throughput",
    "ddp-scaling": "ddp_scaling",
}

NAMES: tuple[str, ...] = tuple(_MODULES)


def get(name: str):
    """The scenario called ``name``; UserError listing the names if there is none."""
    module = _MODULES.get(name)
    if module is None:
        raise UserError(f"no demo named '{name}' (choose from: {', '.join(NAMES)})")
    return importlib.import_module(f"tensorscope.demos.{module}").SCENARIO


def catalogue() -> list:
    """Every scenario, in teaching order."""
    return [get(name) for name in NAMES]
