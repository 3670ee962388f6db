"""Opening a checkpoint file safely: format detection, weights-only loading, clear refusals.

Nothing in an untrusted file runs. The order of checks is what makes that true:

1. the file's first bytes decide its format (torch.save's zip archive, TorchScript archive,
   torch's legacy pickle format) before torch sees it, so a text file or a bare pickle is
   "not a torch file", never something torch tries to unpickle;
2. for a zip checkpoint, ``data.pkl`` is disassembled statically (pickletools, which runs
   nothing) and any global outside torch's weights-only allowlist is refused up front;
3. loading itself is ``torch.load(weights_only=True, map_location=<capture>, mmap=True)``;
   torch's weights-only unpickler is the second fence for what a static scan cannot see.

``weights_only=False`` is used only when the caller passes ``trust=True`` (the CLI's
``--trust``); there is no silent fallback.

``map_location`` is a callable that returns each storage as it was read (on the CPU) and
writes down the location tag it was saved with (``"cuda:0"``, ``"cpu"``, ...), keyed by the
storage: that is how a CUDA checkpoint opens on a machine without a GPU and still says
where it came from.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from typing import Any

from tensorscope.errors import UserError, one_line

#: torch's legacy format starts with a pickled magic number (protocol 2: LONG1 + 10 bytes).
_LEGACY_MAGIC = b"\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19"
_ZIP_MAGIC = b"PK\x03\x04"
#: Formats that cannot be memory-mapped are refused above this share of available memory.
_MEMORY_SHARE = 0.8

TRUST_HINT = "pass --trust to load it anyway, only if you trust whoever made the file"


@dataclass
class Loaded:
    """A file's loaded root object and what was learnt while loading it."""

    path: str
    format: str
    """"zip" (torch.save), "legacy" (torch.save's pre-1.6 format) or "torchscript"."""
    obj: Any
    file_bytes: int
    mmap: bool
    trusted: bool
    locations: dict[int, str] = field(default_factory=dict)
    """Saved location tag by storage (``untyped_storage()._cdata``)."""
    default_location: str | None = None
    """The location every storage was saved from, when only that is known (TorchScript)."""
    code: dict[str, str] = field(default_factory=dict)
    """TorchScript: module path ("" is the root) -> its TorchScript source."""
    module_types: dict[str, str] = field(default_factory=dict)
    """TorchScript: module path -> original class name."""


def load_file(path: str | os.PathLike, *, trust: bool = False) -> Loaded:
    """Load ``path`` for inspection, or raise UserError with one line saying why not."""
    path = os.path.expanduser(os.fspath(path))
    if not os.path.exists(path):
        raise UserError(f"{path}: no such file")
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, ".metadata")):
            raise UserError(f"{path}: a torch.distributed.checkpoint folder, which this inspector "
                            "does not read (it opens single files written by torch.save)")
        raise UserError(f"{path}: is a directory, not a checkpoint file")
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            head = fh.read(64)
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or one_line(exc)})") from None
    if size == 0:
        raise UserError(f"{path}: empty file, not a torch checkpoint")
    if head.startswith(_ZIP_MAGIC):
        names = _zip_names(path)
        if _is_torchscript(names):
            return _load_torchscript(path, size)
        if not any(n.endswith("/data.pkl") for n in names):
            raise UserError(f"{path}: a zip archive, but not one written by torch.save (no data.pkl)")
        _refuse_unsafe_globals(path, trust)
        return _load_torch(path, size, "zip", trust)
    if _LEGACY_MAGIC in head[:16]:
        _check_memory(path, size)
        return _load_torch(path, size, "legacy", trust)
    raise UserError(f"{path}: not a torch file ({_what_is_it(head)})")


def _zip_names(path: str) -> list[str]:
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.namelist()
    except zipfile.BadZipFile:
        raise UserError(f"{path}: truncated or corrupted archive (its zip directory is missing or "
                        "damaged: was the file cut short?)") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: truncated or corrupted archive ({one_line(exc)})") from None


def _is_torchscript(names: list[str]) -> bool:
    # torch.jit.save writes constants.pkl and a code/ folder next to data.pkl; torch.save
    # never does. Decided from the names alone, before anything is unpickled.
    return any(n.endswith("/constants.pkl") or "/code/" in n for n in names)


def _what_is_it(head: bytes) -> str:
    if head[:1] == b"\x80":
        return "a plain pickle, not written by torch.save"
    if len(head) >= 9 and head[8:9] == b"{":
        return "looks like a safetensors file, which this inspector does not read"
    if head.startswith(b"\x89HDF"):
        return "an HDF5 file"
    try:
        head.decode("utf-8")
        return "a text file"
    except UnicodeDecodeError:
        return "unrecognised binary data"


def _refuse_unsafe_globals(path: str, trust: bool) -> None:
    """Statically list the pickle's globals; refuse if any is outside torch's allowlist."""
    import torch

    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception as exc:  # pickletools could not even disassemble it
        raise UserError(f"{path}: corrupted checkpoint: its data.pkl cannot be read ({one_line(exc)})") from None
    if unsafe and not trust:
        names = ", ".join(sorted(unsafe)[:3]) + (" ..." if len(unsafe) > 3 else "")
        raise UserError(f"{path}: refused to load: its pickle needs {names}, which weights-only "
                        f"loading does not allow (it could run code); {TRUST_HINT}")


def _check_memory(path: str, size: int) -> None:
    # The legacy format cannot be memory-mapped: torch reads every storage into memory.
    try:
        import psutil

        available = psutil.virtual_memory().available
    except Exception:  # no way to tell: let torch try
        return
    if size > _MEMORY_SHARE * available:
        raise UserError(f"{path}: {size / 2**30:.1f} GiB in torch's legacy format, which cannot be "
                        f"memory-mapped, and only {available / 2**30:.1f} GiB of memory is free; "
                        "re-save it with torch.save (zip format) to inspect it")


def _load_torch(path: str, size: int, fmt: str, trust: bool) -> Loaded:
    import torch

    locations: dict[int, str] = {}

    def capture(storage: Any, location: str) -> Any:
        # Called once per saved storage: keep it where it was read (CPU, or the file's
        # memory map) and remember where it was saved from.
        locations[storage._cdata] = location
        return storage

    mmap = fmt == "zip"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if trust:
                obj = torch.load(path, map_location=capture, weights_only=False, mmap=mmap)
            else:
                obj = torch.load(path, map_location=capture, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        raise UserError(_unpickling_message(path, str(exc))) from None
    except MemoryError:
        raise UserError(f"{path}: not enough memory to load it") from None
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"{path}: {_load_failure(exc)}") from None
    return Loaded(path=path, format=fmt, obj=obj, file_bytes=size, mmap=mmap, trusted=trust,
                  locations=locations)


def _unpickling_message(path: str, text: str) -> str:
    match = re.search(r"GLOBAL ([\w.]+)", text)
    if match:
        return (f"{path}: refused to load: its pickle needs {match.group(1)}, which weights-only "
                f"loading does not allow (it could run code); {TRUST_HINT}")
    reason = text.split("WeightsUnpickler error:", 1)[-1] if "WeightsUnpickler error:" in text else text
    first = next((ln.strip() for ln in reason.splitlines() if ln.strip()), "unreadable pickle")
    return f"{path}: corrupted checkpoint: its pickle cannot be read ({first})"


def _load_failure(exc: BaseException) -> str:
    text = str(exc)
    if "PytorchStreamReader" in text or "zip archive" in text or isinstance(exc, (EOFError, zipfile.BadZipFile)):
        first = text.split(". ")[0].strip() or type(exc).__name__
        return f"truncated or corrupted archive ({first})"
    return f"could not load it ({one_line(exc)})"


def _load_torchscript(path: str, size: int) -> Loaded:
    """torch.jit.load on the CPU.

    TorchScript's own (C++) unpickler builds only TorchScript types and imports no Python;
    the one thing from the archive that can execute at load is a scripted ``__setstate__``,
    which is TorchScript (no ``os``, no ``eval``), not Python. The code is shown, never run.
    """
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = torch.jit.load(path, map_location="cpu")
    except Exception as exc:
        raise UserError(f"{path}: {_load_failure(exc)}") from None
    code: dict[str, str] = {}
    types: dict[str, str] = {}
    for name, sub in module.named_modules():
        types[name] = getattr(sub, "original_name", type(sub).__name__)
        try:
            code[name] = sub.code
        except Exception:  # a module without forward (e.g. a container that is only indexed)
            continue
    locations = sorted(_torchscript_locations(path))
    default = locations[0] if len(locations) == 1 else ("mixed: " + ", ".join(locations) if locations else None)
    return Loaded(path=path, format="torchscript", obj=module, file_bytes=size, mmap=False,
                  trusted=False, default_location=default, code=code, module_types=types)


class _Stub:
    """Stands in for every global of a pickle read by :class:`_PeekUnpickler`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> "_Stub":
        return _Stub()

    def __setstate__(self, state: Any) -> None:
        pass


class _PeekUnpickler(pickle.Unpickler):
    """Reads a pickle without importing or calling anything: every global is a stub.

    Used on TorchScript's data.pkl only to read the location tags in its persistent ids.
    """

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self.locations: set[str] = set()

    def find_class(self, module: str, name: str) -> Any:
        return _Stub

    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) >= 4 and isinstance(pid[3], str):
            self.locations.add(pid[3])
        return _Stub()


def _torchscript_locations(path: str) -> set[str]:
    try:
        with zipfile.ZipFile(path) as zf:
            name = next(n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1)
            peek = _PeekUnpickler(zf.read(name))
            peek.load()
            return peek.locations
    except Exception:  # only a label is lost: the module itself loaded fine
        return set()
