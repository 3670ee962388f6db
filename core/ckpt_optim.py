"""Optimizer state in a checkpoint: per parameter step count, momentum and Adam moments.

An optimizer's ``state_dict()`` is ``{"state": {id: {...}}, "param_groups": [{..., "params":
[ids]}]}``: parameters are numbered 0..N-1 in the order they were given to the optimizer,
not named. When the checkpoint also holds the model's state_dict, and the optimizer was
given ``model.parameters()`` (the state_dict's parameters, in order, each tied tensor once),
the numbers map to names; :func:`find_optimizers` checks every shape before it believes
that, and says why when it cannot.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: State_dict entries that are buffers, not parameters (an optimizer never holds them).
_BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


@dataclass
class Moment:
    """One tensor of a parameter's optimizer state (exp_avg, momentum_buffer, ...)."""

    name: str
    key: str
    shape: tuple[int, ...]
    dtype: str
    norm: float

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "shape": list(self.shape)}


@dataclass
class ParamState:
    """What the optimizer keeps for one parameter."""

    id: int
    name: str | None
    group: int
    step: float | None
    moments: list[Moment] = field(default_factory=list)
    other: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "group": self.group, "step": self.step,
                "moments": [m.to_json() for m in self.moments],
                "other": {k: repr(v) if not isinstance(v, (int, float, str, bool)) else v
                          for k, v in self.other.items()}}


@dataclass
class OptimizerState:
    """One optimizer state_dict found in the file."""

    key: str
    kind: str
    """A guess from the state's names: "Adam/AdamW", "SGD with momentum", ..."""
    groups: list[dict[str, Any]]
    """Hyperparameters of each param group, with "params" replaced by their count."""
    params: list[ParamState]
    names_from: str | None
    """Dotted key of the model state_dict whose names were used, or None."""
    names_note: str

    def to_json(self) -> dict[str, Any]:
        groups = [{k: v if isinstance(v, (int, float, str, bool, type(None))) else repr(v)
                   for k, v in g.items()} for g in self.groups]
        return {"key": self.key, "kind": self.kind, "groups": groups,
                "params": [p.to_json() for p in self.params], "names_from": self.names_from,
                "names_note": self.names_note}


def _is_optimizer_state(value: Any) -> bool:
    return (isinstance(value, dict) and isinstance(value.get("state"), dict)
            and isinstance(value.get("param_groups"), list)
            and all(isinstance(g, dict) and "params" in g for g in value["param_groups"]))


def _containers(root: Any) -> list[tuple[str, Any]]:
    """(dotted key, value) of every dict in the object, outermost first, iteratively."""
    out: list[tuple[str, Any]] = []
    stack: list[tuple[str, Any]] = [("", root)]
    seen: set[int] = set()
    while stack:
        key, value = stack.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, dict):
            out.append((key, value))
            items = list(value.items())
        elif isinstance(value, (list, tuple)):
            items = list(enumerate(value))
        else:
            continue
        for k, v in reversed(items):
            if isinstance(v, (dict, list, tuple)):
                stack.append((f"{key}.{k}" if key else str(k), v))
    return out


def _norm(t: Any) -> float:
    import torch

    t = t.detach()
    if t.numel() == 0:
        return 0.0
    if t.is_complex():
        t = t.abs()
    if not t.is_floating_point():
        t = t.to(torch.float64)
    return float(torch.linalg.vector_norm(t, dtype=torch.float64))


def _kind(names: set[str]) -> str:
    if {"exp_avg", "exp_avg_sq"} <= names:
        return "Adam/AdamW"
    if "momentum_buffer" in names:
        return "SGD with momentum"
    if "square_avg" in names:
        return "RMSprop/Adadelta"
    if "sum" in names:
        return "Adagrad"
    return "optimizer" if names else "optimizer (no state yet: it has not stepped)"


def find_optimizers(ckpt: Any, root: Any) -> list[OptimizerState]:
    """Every optimizer state_dict in ``root``, with names from the model when they fit."""
    import torch

    containers = _containers(root)
    found = [(k, v) for k, v in containers if _is_optimizer_state(v)]
    owners = [k for k, _ in found]
    result = []
    for key, sd in found:
        ids: list[int] = []
        groups: list[dict[str, Any]] = []
        group_of: dict[int, int] = {}
        for gi, group in enumerate(sd["param_groups"]):
            groups.append({**{k: v for k, v in group.items() if k != "params"},
                           "params": len(group["params"])})
            for pid in group["params"]:
                ids.append(pid)
                group_of[pid] = gi
        params: list[ParamState] = []
        names_seen: set[str] = set()
        for pid, state in sd["state"].items():
            ps = ParamState(id=pid, name=None, group=group_of.get(pid, -1), step=None)
            for name, value in (state.items() if isinstance(state, dict) else ()):
                names_seen.add(name)
                if name == "step":
                    ps.step = float(value) if isinstance(value, (int, float, torch.Tensor)) else None
                elif isinstance(value, torch.Tensor) and value.dim() > 0:
                    prefix = f"{key}.state.{pid}" if key else f"state.{pid}"
                    ps.moments.append(Moment(name=name, key=f"{prefix}.{name}", shape=tuple(value.shape),
                                             dtype=str(value.dtype).removeprefix("torch."),
                                             norm=_norm(value)))
                else:
                    ps.other[name] = value.item() if isinstance(value, torch.Tensor) else value
            params.append(ps)
        names_from, note = _name_params(ckpt, containers, owners, ids, params)
        result.append(OptimizerState(key=key, kind=_kind(names_seen), groups=groups, params=params,
                                     names_from=names_from, names_note=note))
    return result


def _state_dicts(ckpt: Any, containers: list[tuple[str, Any]], owners: list[str]) -> list[tuple[str, list[str]]]:
    """Model state_dicts in the file: (key, the keys of its parameters in order).

    A state_dict is a dict of tensors outside any optimizer. Buffers (BatchNorm statistics,
    integer tensors) are left out, and a tensor tied to an earlier one is counted once, as
    ``model.parameters()`` does.
    """
    import torch

    out = []
    for key, value in containers:
        if any(o == "" or key == o or key.startswith(o + ".") for o in owners):
            continue
        if not value or not all(isinstance(v, torch.Tensor) for v in value.values()):
            continue
        names: list[str] = []
        seen: set[tuple[Any, ...]] = set()
        for name, t in value.items():
            full = f"{key}.{name}" if key else str(name)
            entry = ckpt.tensor(full)
            if str(name).endswith(_BUFFER_SUFFIXES) or not (t.is_floating_point() or t.is_complex()):
                continue
            ident = (entry.storage, entry.offset, entry.shape, entry.stride) if entry else (full,)
            if ident in seen:
                continue
            seen.add(ident)
            names.append(full)
        out.append((key, names))
    return out


def _name_params(ckpt: Any, containers: list[tuple[str, Any]], owners: list[str], ids: list[int],
                 params: list[ParamState]) -> tuple[str | None, str]:
    candidates = _state_dicts(ckpt, containers, owners)
    if not candidates:
        return None, "parameters are numbered only: the file holds no model state_dict to name them"
    reasons = []
    for sd_key, names in candidates:
        label = sd_key or "the file's root"
        if len(names) != len(ids):
            reasons.append(f"{label} has {len(names)} parameters, the optimizer {len(ids)}")
            continue
        by_id = dict(zip(ids, names))
        bad = next((p for p in params for m in p.moments if _shape(ckpt, by_id.get(p.id)) != m.shape), None)
        if bad is not None:
            reasons.append(f"{label}: shapes disagree at parameter {bad.id}")
            continue
        for p in params:
            p.name = by_id.get(p.id)
        return sd_key, (f"names from {label}, assuming the optimizer was given its parameters in "
                        "order (shapes checked)")
    return None, "cannot name parameters: " + "; ".join(reasons)


def _shape(ckpt: Any, key: str | None) -> tuple[int, ...] | None:
    entry = ckpt.tensor(key) if key is not None else None
    return entry.shape if entry is not None else None
