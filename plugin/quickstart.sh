#!/usr/bin/env bash
# Everything on a fresh machine: the engine and Compose v2 where missing (as root on
# Debian/Ubuntu), the plugin build, the install into ~/.docker/cli-plugins, and a demo.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# The demo needs the BusyBox test image, not the PostgreSQL one (a minute of debootstrap).
DOCKER_PERSIST_BED_POSTGRES=${DOCKER_PERSIST_BED_POSTGRES:-0} "$root/tests/bed/testbed"
"$root/build/build.sh"
"$root/plugin/install.sh" "$@"
"$root/plugin/demo.sh"
