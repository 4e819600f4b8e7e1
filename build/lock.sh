#!/usr/bin/env bash
# Regenerate build/requirements.lock: every dependency (runtime, the dev tools, the build
# backend), pinned with the sha256 of each file PyPI offers, for every platform. Run it after
# changing the dependencies in pyproject.toml, and commit the lock with them. build/venv.sh
# installs from the lock only (pip --require-hashes), so a commit always builds the same bundle.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
python3 -m venv "$tools"
"$tools/bin/pip" install -q "pip-tools>=7.4,<8"
cd "$root"
"$tools/bin/pip-compile" --quiet --extra dev --all-build-deps --generate-hashes --allow-unsafe --strip-extras \
    --no-emit-index-url --no-emit-find-links --output-file build/requirements.lock pyproject.toml
echo "lock: build/requirements.lock" >&2
