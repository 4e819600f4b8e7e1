#!/usr/bin/env bash
# A short, real demo of docker-persist through the Docker CLI. Needs an engine and
# the installed plugin (plugin/quickstart.sh does both).
set -euo pipefail

say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
run() { say "$*"; "$@"; }

run docker persist version
say "docker info | grep -A3 'persist:'"
docker info 2>/dev/null | grep -A3 ' persist:'
run docker persist --help
