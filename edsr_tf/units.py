"""Sizes for people: one unit system (binary, labelled KiB/MiB/GiB) in every message and report."""

from __future__ import annotations


def format_bytes(n: int | float) -> str:
    """``n`` bytes as ``1.5 GiB`` / ``2.8 MiB`` / ``12.0 KiB`` / ``512 bytes`` (powers of 1024)."""
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} bytes"
