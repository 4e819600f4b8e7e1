"""Sizes and durations, for people and from them."""

from __future__ import annotations


def format_bytes(size: float) -> str:
    """Return a size for people: 1.2 GB, 340.0 kB, 12 B."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"
