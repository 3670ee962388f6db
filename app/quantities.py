"""How the app writes amounts: byte sizes, and the noun that goes with a count."""

from __future__ import annotations


def human_bytes(n: int | float) -> str:
    """1536 -> "1.5 KiB" (binary units, as PyTorch's memory figures are)."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def plural(n: int, noun: str, many: str | None = None) -> str:
    """``noun`` for one, else ``many`` (default: noun + "s"): f"{n} {plural(n, 'leaf', 'leaves')}"."""
    return noun if n == 1 else (many or noun + "s")
