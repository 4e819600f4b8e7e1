"""The guard's program: a static Linux executable that waits, doing nothing, until it is killed.

A running container is what no prune removes, so a guard runs this. It is a few dozen bytes of
machine code in a minimal ELF file, written out here rather than shipped as a binary blob: on
x86_64 it calls pause(2) in a loop; on arm64, which has no pause(2), ppoll(2) with nothing to
wait for. It never reads, writes, allocates, forks or execs; it uses no CPU and ~100 KB of
memory. As PID 1 of its container it ignores SIGTERM, so guards are created with SIGKILL as
their stop signal.
"""

from __future__ import annotations

import struct

BASE_ADDRESS = 0x400000
_ELF_HEADER = struct.Struct("<16sHHIQQQIHHHHHH")
_PROGRAM_HEADER = struct.Struct("<IIQQQQQQ")

# The loop, per engine architecture (as `GET /version` names it) and ELF machine number.
PROGRAMS: dict[str, tuple[int, bytes]] = {
    # 0: mov eax, 34 (pause); 5: syscall; 7: jmp 0
    "amd64": (62, bytes.fromhex("b8220000000f05ebf7")),
    # 0-c: mov x0..x3, #0; 10: mov x8, #73 (ppoll); 14: svc #0; 18: b 0
    "arm64": (
        183,
        struct.pack("<7I", 0xD2800000, 0xD2800001, 0xD2800002, 0xD2800003, 0xD2800928, 0xD4000001, 0x17FFFFFA),
    ),
}


def guard_program(arch: str) -> bytes | None:
    """Return the guard's executable for an engine architecture (amd64, arm64), or None for another."""
    program = PROGRAMS.get(arch)
    if program is None:
        return None
    machine, code = program
    headers = _ELF_HEADER.size + _PROGRAM_HEADER.size
    size = headers + len(code)
    ident = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)  # 64-bit, little-endian, version 1, System V
    elf = _ELF_HEADER.pack(
        ident, 2, machine, 1, BASE_ADDRESS + headers, _ELF_HEADER.size, 0, 0,
        _ELF_HEADER.size, _PROGRAM_HEADER.size, 1, 0, 0, 0,
    )  # fmt: skip
    segment = _PROGRAM_HEADER.pack(1, 5, 0, BASE_ADDRESS, BASE_ADDRESS, size, size, 0x1000)  # PT_LOAD, R+X
    return elf + segment + code
