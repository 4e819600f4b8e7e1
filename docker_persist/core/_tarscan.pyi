# The C reader of core/archive.py's TarDigester (core/_tarscan.c, built by build/accel.sh).
from typing import Any

def scan(
    view: memoryview,
    pos: int,
    end: int,
    seq: int,
    records: list[tuple[Any, ...]],
    limit: int,
    symlinks: set[str],
    hash_data: bool,
    check_safety: bool,
    prefix: bytes,
    kinds: tuple[str, str, str, str, tuple[()]],
    /,
) -> tuple[int, int]: ...
def serialize(nodes: list[tuple[Any, ...]], index: bool, /) -> tuple[bytes, bytes, int, int, int, int] | None: ...
