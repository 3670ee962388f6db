"""What is inside a checkpoint: a tree of keys, every tensor and the storage it lives in.

:func:`open_checkpoint` loads a file safely (see :mod:`tensorscope.ckpt_load`) and walks
the loaded object — nested dicts, lists, tuples, OrderedDicts, modules — iteratively into
:class:`Node` s. Each tensor becomes a :class:`TensorEntry` keyed by its dotted path from
the root (``model.fc1.weight`` for ``{"model": state_dict}``); entries that point into one
storage (tied weights) carry the same storage id, because that is what torch.save wrote:
one storage record, many tensors viewing it.

>>> ckpt = open_checkpoint("model.pt")                       # doctest: +SKIP
>>> [(t.key, t.shape, t.storage) for t in ckpt.tensors][:2]  # doctest: +SKIP
[('fc1.weight', (3, 4), 's0'), ('fc1.bias', (3,), 's1')]
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any, Iterator

from tensorscope.ckpt_load import Loaded, load_file

#: Python values shown as metadata (leaves that are not tensors or containers).
_SCALARS = (int, float, bool, str, bytes, complex, type(None))
#: A list/tuple of scalars is one leaf up to this length (a loss history is not a subtree).
_SCALAR_LIST_MAX = 10_000


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of the file."""

    key: str
    shape: tuple[int, ...]
    dtype: str
    device: str
    """Location the tensor was saved from ("cuda:0", "cpu", ...), not where it is now."""
    bytes: int
    """numel x element size: what this tensor's elements take."""
    storage: str | None
    """Storage id ("s0", ...): equal for entries that share one storage; None if not strided."""
    stride: tuple[int, ...]
    offset: int
    """Storage offset, in elements."""
    kind: str = "Tensor"
    """"Tensor", "Parameter" or the tensor subclass / layout."""
    requires_grad: bool = False

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["shape"] = list(self.shape)
        out["stride"] = list(self.stride)
        return out


@dataclass
class StorageInfo:
    """One storage of the file and the keys that view it."""

    id: str
    bytes: int
    device: str
    keys: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Node:
    """A key of the tree: a container, a tensor or a value."""

    key: str
    """Dotted path from the root ("" is the root itself)."""
    name: str
    """The last component, as shown in a tree."""
    kind: str
    """"dict", "list", "tuple", "module", "group" (a dotted prefix), "tensor", "value", "object"."""
    summary: str
    children: list["Node"] = field(default_factory=list)
    tensor: int | None = None
    """Index into :attr:`Checkpoint.tensors` for a tensor node."""

    def walk(self) -> Iterator["Node"]:
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))


@dataclass
class Checkpoint:
    """A loaded file, described."""

    path: str
    format: str
    file_bytes: int
    mmap: bool
    trusted: bool
    root: Node
    tensors: list[TensorEntry]
    storages: list[StorageInfo]
    metadata: dict[str, Any]
    """Dotted key -> scalar value (epoch, loss, ...), outside optimizer hyperparameters."""
    optimizers: list[Any]
    """:class:`tensorscope.ckpt_optim.OptimizerState` for each optimizer state_dict found."""
    code: dict[str, str]
    module_types: dict[str, str]
    obj: Any = field(repr=False, default=None)
    values: dict[str, Any] = field(repr=False, default_factory=dict)
    """Dotted key -> the loaded tensor (memory-mapped where the format allows)."""

    def tensor(self, key: str) -> TensorEntry | None:
        return self._tensors_by_key.get(key)

    def storage(self, sid: str | None) -> StorageInfo | None:
        return self._storages_by_id.get(sid) if sid is not None else None

    @cached_property
    def _tensors_by_key(self) -> dict[str, TensorEntry]:
        return {t.key: t for t in self.tensors}

    @cached_property
    def _storages_by_id(self) -> dict[str, StorageInfo]:
        return {s.id: s for s in self.storages}

    def totals_by_dtype(self) -> dict[str, dict[str, int]]:
        return _totals(self, lambda t: t.dtype)

    def totals_by_module(self) -> dict[str, dict[str, int]]:
        groups = module_groups(self)
        return _totals(self, lambda t: groups.get(t.key, t.key.split(".")[0]))

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.path,
            "format": self.format,
            "file_bytes": self.file_bytes,
            "mmap": self.mmap,
            "trusted": self.trusted,
            "tensors": [t.to_json() for t in self.tensors],
            "storages": [s.to_json() for s in self.storages],
            "shared_storages": [s.to_json() for s in self.storages if len(s.keys) > 1],
            "optimizers": [o.to_json() for o in self.optimizers],
            "metadata": {k: _jsonable(v) for k, v in self.metadata.items()},
            "totals": {"by_dtype": self.totals_by_dtype(), "by_module": self.totals_by_module()},
            "code": self.code,
        }


def open_checkpoint(path: str | os.PathLike, *, trust: bool = False) -> Checkpoint:
    """Load and describe ``path``. Raises UserError (one line) for anything unreadable."""
    loaded = load_file(path, trust=trust)
    return describe(loaded)


def describe(loaded: Loaded) -> Checkpoint:
    from tensorscope.ckpt_optim import find_optimizers

    root_obj = loaded.obj
    if loaded.format == "torchscript":
        root_obj = loaded.obj.state_dict()
    walker = _Walker(loaded)
    root = walker.walk(root_obj)
    ckpt = Checkpoint(path=loaded.path, format=loaded.format, file_bytes=loaded.file_bytes,
                      mmap=loaded.mmap, trusted=loaded.trusted, root=root, tensors=walker.tensors,
                      storages=list(walker.storages.values()), metadata=walker.metadata,
                      optimizers=[], code=loaded.code, module_types=loaded.module_types,
                      obj=loaded.obj, values=walker.values)
    ckpt.optimizers = find_optimizers(ckpt, root_obj)
    # Metadata inside an optimizer (lr, betas) is its hyperparameters, shown there instead.
    owners = [o.key for o in ckpt.optimizers]
    ckpt.metadata = {k: v for k, v in ckpt.metadata.items()
                     if not any(o == "" or k.startswith(o + ".") for o in owners)}
    return ckpt


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _is_scalar_seq(value: Any) -> bool:
    return (isinstance(value, (list, tuple)) and len(value) <= _SCALAR_LIST_MAX
            and all(isinstance(v, _SCALARS) for v in value))


class _Walker:
    """Iterative walk of the loaded object (no recursion: deep nests cannot overflow)."""

    def __init__(self, loaded: Loaded) -> None:
        self.loaded = loaded
        self.tensors: list[TensorEntry] = []
        self.values: dict[str, Any] = {}
        self.storages: dict[int, StorageInfo] = {}
        self.metadata: dict[str, Any] = {}

    def walk(self, obj: Any) -> Node:
        import torch

        root = Node(key="", name=os.path.basename(self.loaded.path), kind="", summary="")
        stack: list[tuple[Node, Any]] = [(root, obj)]
        active: set[int] = set()
        while stack:
            node, value = stack.pop()
            if isinstance(value, torch.Tensor):
                self._tensor(node, value)
                continue
            items = self._items(value)
            if items is None:
                self._leaf(node, value)
                continue
            if id(value) in active:  # shared or cyclic (pickle keeps identity): walk it once
                node.kind, node.summary = "object", "(the same container as an earlier key: shown there)"
                continue
            active.add(id(value))
            node.kind = self._kind(value)
            noun = "key" if node.kind in ("dict", "module") else "item"
            node.summary = f"{type(value).__name__} · {len(items)} {noun}{'s' if len(items) != 1 else ''}"
            node.children, visit = self._children(node, items)
            # Push in reverse so the walk (and the tensor list) keeps the file's order.
            stack.extend(reversed(visit))
        return root

    def _children(self, parent: Node, items: list[tuple[str, Any]]
                  ) -> tuple[list[Node], list[tuple[Node, Any]]]:
        """Child nodes, and (node, value) pairs to visit in order.

        Dotted string keys (a state_dict's ``fc1.weight``) are grouped under nodes for their
        prefixes (``fc1``), so a model's state_dict reads as its module tree.
        """
        top: list[Node] = []
        visit: list[tuple[Node, Any]] = []
        groups: dict[str, Node] = {}
        for name, value in items:
            parts = name.split(".")
            leaf = Node(key=_join(parent.key, name), name=parts[-1], kind="", summary="")
            visit.append((leaf, value))
            if len(parts) == 1 or not all(parts):
                leaf.name = name
                top.append(leaf)
                continue
            siblings, prefix = top, ""
            for part in parts[:-1]:
                prefix = _join(prefix, part)
                group = groups.get(prefix)
                if group is None:
                    group = Node(key=_join(parent.key, prefix), name=part, kind="group", summary="")
                    groups[prefix] = group
                    siblings.append(group)
                siblings = group.children
            siblings.append(leaf)
        for group in groups.values():
            group.summary = f"{len(group.children)} key{'s' if len(group.children) != 1 else ''}"
        return top, visit

    def _items(self, value: Any) -> list[tuple[str, Any]] | None:
        import torch

        if isinstance(value, dict):
            return [(str(k), v) for k, v in value.items()]
        if isinstance(value, (list, tuple)) and not _is_scalar_seq(value):
            return [(str(i), v) for i, v in enumerate(value)]
        if isinstance(value, torch.nn.Module) and not isinstance(value, torch.jit.ScriptModule):
            return list(value.state_dict(keep_vars=True).items())
        if type(value).__name__ in ("Namespace", "SimpleNamespace") and hasattr(value, "__dict__"):
            return list(vars(value).items())
        return None

    @staticmethod
    def _kind(value: Any) -> str:
        if isinstance(value, dict):
            return "dict"
        if isinstance(value, list):
            return "list"
        if isinstance(value, tuple):
            return "tuple"
        if type(value).__name__ in ("Namespace", "SimpleNamespace"):
            return "dict"
        return "module"

    def _leaf(self, node: Node, value: Any) -> None:
        if isinstance(value, _SCALARS) or _is_scalar_seq(value):
            node.kind = "value"
            node.summary = _short(value)
            self.metadata[node.key] = value
        else:
            node.kind = "object"
            node.summary = f"{type(value).__module__}.{type(value).__qualname__}"
            self.metadata[node.key] = f"<{node.summary}>"

    def _tensor(self, node: Node, t: Any) -> None:
        import torch

        dtype = str(t.dtype).removeprefix("torch.")
        kind = "Parameter" if isinstance(t, torch.nn.Parameter) else (
            "Tensor" if type(t) is torch.Tensor else type(t).__name__)
        nbytes = t.numel() * t.element_size()
        storage_id: str | None = None
        device = self.loaded.default_location or "cpu"
        stride: tuple[int, ...] = ()
        offset = 0
        if t.layout == torch.strided:
            storage = t.untyped_storage()
            info = self.storages.get(storage._cdata)
            location = self.loaded.locations.get(storage._cdata, device)
            if info is None:
                info = StorageInfo(id=f"s{len(self.storages)}", bytes=storage.nbytes(), device=location)
                self.storages[storage._cdata] = info
            info.keys.append(node.key)
            storage_id, device = info.id, info.device
            stride, offset = tuple(t.stride()), t.storage_offset()
        else:
            kind = str(t.layout).removeprefix("torch.")
            nbytes = _sparse_bytes(t, nbytes)
        entry = TensorEntry(key=node.key, shape=tuple(t.shape), dtype=dtype, device=device,
                            bytes=nbytes, storage=storage_id, stride=stride, offset=offset,
                            kind=kind, requires_grad=bool(t.requires_grad))
        node.kind = "tensor"
        node.tensor = len(self.tensors)
        node.summary = f"{dtype} {list(entry.shape)}"
        self.tensors.append(entry)
        self.values[node.key] = t


def _sparse_bytes(t: Any, dense: int) -> int:
    """Bytes a sparse tensor really stores (values + indices), not its dense size."""
    try:
        if t.layout.__repr__() == "torch.sparse_coo":
            parts = (t._values(), t._indices())
        else:
            parts = tuple(getattr(t, name)() for name in ("values", "crow_indices", "col_indices")
                          if hasattr(t, name))
        return sum(p.numel() * p.element_size() for p in parts)
    except Exception:  # an exotic layout: its dense size is the honest fallback
        return dense


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _jsonable(value: Any) -> Any:
    if isinstance(value, (int, str, bool)) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return repr(value)


def module_groups(ckpt: Checkpoint) -> dict[str, str]:
    """Tensor key -> the top-level module it belongs to, for totals.

    ``model.fc1.weight`` -> ``model.fc1`` (the outermost dotted-prefix group of a
    state_dict); tensors of an optimizer's state -> the optimizer's key; any other tensor
    is its own group.
    """
    optimizer_keys = [o.key for o in ckpt.optimizers]
    out: dict[str, str] = {}
    stack: list[tuple[Node, str | None]] = [(ckpt.root, None)]
    while stack:
        node, group = stack.pop()
        if node.tensor is not None:
            owner = next((k for k in optimizer_keys if k == "" or node.key.startswith(k + ".")), None)
            out[node.key] = group or ((owner or "optimizer") if owner is not None else node.key)
            continue
        for child in node.children:
            stack.append((child, group or (child.key if child.kind == "group" else None)))
    return out


def _totals(ckpt: Checkpoint, group_of: Any) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = defaultdict(lambda: {"tensors": 0, "bytes": 0, "storage_bytes": 0})
    seen: set[str] = set()
    storage_bytes = {s.id: s.bytes for s in ckpt.storages}
    for t in ckpt.tensors:
        row = out[group_of(t)]
        row["tensors"] += 1
        row["bytes"] += t.bytes
        # A storage counts once, for the first key that views it: tied weights are not doubled.
        if t.storage is not None and t.storage not in seen:
            seen.add(t.storage)
            row["storage_bytes"] += storage_bytes[t.storage]
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["bytes"]))
