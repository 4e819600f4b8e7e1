#!/usr/bin/env bash
# Create or refresh the project venv with the dev extras. Idempotent: it reinstalls
# only when pyproject.toml changed since the last install.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="${1:-$root/.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
stamp="$venv/.docker-persist-installed"
want=$(sha256sum "$root/pyproject.toml" | cut -c1-64)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "venv: installing docker-persist and its dev tools into $venv" >&2
    "$venv/bin/pip" install -q --disable-pip-version-check -e "$root[dev]" 2>&1 | grep -v '^WARNING: Location' >&2 || true
    "$venv/bin/python" -c "import docker_persist, docker, yaml, PyInstaller" \
        || { echo "venv: install failed" >&2; exit 1; }
    echo "$want" >"$stamp"
fi
