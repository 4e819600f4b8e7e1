"""The guard's program: a static executable that waits without using the CPU, per architecture."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from docker_persist.engine.guardbin import PROGRAMS, guard_program

NATIVE = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine())
EMULATORS = {"amd64": "qemu-x86_64", "arm64": "qemu-aarch64"}


def test_only_known_architectures_have_a_program() -> None:
    assert set(PROGRAMS) == {"amd64", "arm64"}
    assert guard_program("s390x") is None


@pytest.mark.parametrize("arch", sorted(PROGRAMS))
def test_the_program_is_a_minimal_static_elf(arch: str) -> None:
    program = guard_program(arch)
    assert program is not None and len(program) < 200
    assert program[:4] == b"\x7fELF" and program[4] == 2 and program[5] == 1  # 64-bit, little-endian
    assert int.from_bytes(program[18:20], "little") == PROGRAMS[arch][0]
    assert int.from_bytes(program[24:32], "little") == 0x400000 + 120  # the entry is right after the headers


@pytest.mark.parametrize("arch", sorted(PROGRAMS))
def test_the_program_waits_using_no_cpu_until_killed(tmp_path: Path, arch: str) -> None:
    path = tmp_path / "guard"
    path.write_bytes(guard_program(arch) or b"")
    path.chmod(0o755)
    if arch == NATIVE:
        argv = [str(path)]
    elif shutil.which(EMULATORS[arch]):
        argv = [EMULATORS[arch], str(path)]
    else:
        pytest.skip(f"neither an {arch} machine nor {EMULATORS[arch]} (Debian's qemu-user) to run it")
    process = subprocess.Popen(argv)
    try:
        time.sleep(1.0)
        assert process.poll() is None, f"the guard program exited {process.returncode}"
        if arch == NATIVE:
            fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks = int(fields[11]) + int(fields[12])  # utime + stime
            assert ticks <= 1, f"the guard used {ticks} clock ticks of CPU in a second"
            assert int(fields[21]) * os.sysconf("SC_PAGE_SIZE") < 1 << 20  # rss, in pages
    finally:
        process.kill()
        process.wait()
