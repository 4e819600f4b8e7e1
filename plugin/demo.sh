#!/usr/bin/env bash
# A short, real demo of docker-persist through the Docker CLI: check a project, back
# it up, break its data, restore it by name, and survive `docker compose down -v`.
# Needs an engine, Compose v2, the installed plugin and the local test image
# (plugin/quickstart.sh does all four).
set -euo pipefail

say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
run() { say "$*"; "$@"; }

work=$(mktemp -d)
export DOCKER_PERSIST_STORE="$work/snapshots"   # keep the demo's snapshots out of your own store
project=persist-demo
cleanup() {
    docker persist unprotect -p "$project" --project-directory "$work" >/dev/null 2>&1 || true
    docker compose -p "$project" --project-directory "$work" down -v -t 0 >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/compose.yaml" <<'YAML'
name: persist-demo
services:
  app:
    image: docker-persist-test/busybox
    network_mode: none
    init: true
    command: ["sh", "-c", "[ -f /data/notes.txt ] || echo 'precious data' > /data/notes.txt; exec sleep 86400"]
    volumes:
      - app_data:/data
    x-persist:
      consistency: stop
      verify: "grep -q precious /data/notes.txt"
volumes:
  app_data:
    x-persist: {protect: true, restore: latest}
YAML
cd "$work"

run docker persist version
say "cat compose.yaml"; cat compose.yaml
run docker persist up -d --wait
run docker persist check || true
run docker persist backup --name before-the-accident
run docker persist snapshots
say "docker compose exec app sh -c 'echo oops > /data/notes.txt'   # the accident"
docker compose exec app sh -c 'echo oops > /data/notes.txt'
run docker compose exec app cat /data/notes.txt
run docker persist restore before-the-accident --yes
run docker compose exec app cat /data/notes.txt
run docker persist verify before-the-accident

say "docker compose down -v   # the classic way to lose a database"
docker compose down -v || true
run docker volume ls --filter "name=${project}_app_data"
cat <<'TEXT'

The volume survived: `docker persist up` gave it an engine guard (a stopped container
that mounts it), so the engine refuses to remove it. To really remove it, use
`docker persist down -v`: it backs up first, then releases exactly those guards.
TEXT
run docker persist down -v
run docker volume ls --filter "name=${project}_app_data"
run docker persist snapshots
say "docker persist up -d --wait   # restores the latest snapshot into the new, empty volume"
docker persist up -d --wait
run docker compose exec app cat /data/notes.txt
