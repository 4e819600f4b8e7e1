#!/usr/bin/env bash
# Create or refresh the project venv: every dependency from build/requirements.lock, each file
# checked against its sha256 (pip --require-hashes), then docker-persist itself, editable,
# without dependencies and without a build environment of its own (its build backend is in the
# lock too). Idempotent: it reinstalls only when the lock or pyproject.toml changed. To change
# a dependency, edit pyproject.toml and run build/lock.sh. Last, build/accel.sh compiles the C module.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="${1:-$root/.venv}"
lock="$root/build/requirements.lock"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
stamp="$venv/.docker-persist-installed"
want=$(cat "$lock" "$root/pyproject.toml" | sha256sum | cut -c1-64)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "venv: installing the locked dependencies and docker-persist into $venv" >&2
    pip_install() {  # quiet when it works; its output, less the noise of absent local indexes, when not
        local out
        out=$("$venv/bin/pip" install -q --disable-pip-version-check "$@" 2>&1) && return 0
        printf '%s\n' "$out" | grep -v '^WARNING: Location' >&2
        echo "venv: pip install $* failed" >&2
        exit 1
    }
    pip_install --require-hashes --no-deps -r "$lock"
    pip_install --no-deps --no-build-isolation -e "$root"
    "$venv/bin/pip" check >&2 || { echo "venv: the installed dependencies do not fit together" >&2; exit 1; }
    "$venv/bin/python" -c "import docker_persist, docker, yaml, zstandard, minio, pyrage, apprise, aiosmtpd, PyInstaller" \
        || { echo "venv: install failed" >&2; exit 1; }
    echo "$want" >"$stamp"
fi
# The C reader of the content digest (docker_persist/core/_tarscan.c): rebuilt when it changed.
"$root/build/accel.sh" "$venv"
