#!/usr/bin/env bash
# Everything on a fresh machine: the engine and Compose v2 where missing (as root on
# Debian/Ubuntu), the plugin build, the install into ~/.docker/cli-plugins, and a demo.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/tests/bed/testbed"
"$root/build/build.sh"
"$root/plugin/install.sh" "$@"
"$root/plugin/demo.sh"
