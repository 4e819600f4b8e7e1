#!/usr/bin/env bash
# Build the docker-persist onedir bundle into build/dist/docker-persist/.
# Creates the project venv (.venv) with the dev extras when it is missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="${DOCKER_PERSIST_VENV:-$root/.venv}"

"$root/build/venv.sh" "$venv"
cd "$root/build"
"$venv/bin/pyinstaller" --noconfirm --clean --log-level WARN \
    --distpath "$root/build/dist" --workpath "$root/build/work" "$root/build/docker-persist.spec"
bundle="$root/build/dist/docker-persist"
"$bundle/docker-persist" docker-cli-plugin-metadata >/dev/null || { echo "build: the bundle does not run" >&2; exit 1; }
echo "build: $bundle/docker-persist ($(du -sh "$bundle" | cut -f1))" >&2
