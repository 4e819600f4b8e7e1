#!/usr/bin/env bash
# Compile docker_persist/core/_tarscan.c, the C reader of the content digest's per-entry hot loop,
# into an extension module beside it, for the venv's Python; OpenSSL's libcrypto gives SHA-256 (the
# library Python's own hashlib uses, so the bundle already carries it). Recompiles only when the
# source or the Python changed. Without the module the pure-Python reader does the same work, slower:
# tests/unit/test_archive_scan.py proves both give the same results, and fails under CI without it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="${1:-${DOCKER_PERSIST_VENV:-$root/.venv}}"
source="$root/docker_persist/core/_tarscan.c"
read -r include suffix < <("$venv/bin/python" -c \
    'import sysconfig; print(sysconfig.get_paths()["include"], sysconfig.get_config_var("EXT_SUFFIX"))')
module="$root/docker_persist/core/_tarscan$suffix"
stamp="$module.source"
want=$( (cat "$source"; echo "$include $suffix") | sha256sum | cut -c1-64)
[ -f "$module" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && exit 0
command -v cc >/dev/null || { echo "accel: no C compiler (cc); install gcc" >&2; exit 1; }
[ -f /usr/include/openssl/sha.h ] || { echo "accel: OpenSSL's headers are missing; install libssl-dev" >&2; exit 1; }
cc -O3 -fPIC -shared -Wall -Wextra -Werror -I"$include" "$source" -lcrypto -o "$module.tmp"
mv "$module.tmp" "$module"
echo "$want" >"$stamp"
echo "accel: built $module" >&2
