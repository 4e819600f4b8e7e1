#!/usr/bin/env bash
# Install (or uninstall) the docker-persist CLI plugin.
#
#   plugin/install.sh [--system] [--bundle DIR] [--uninstall]
#
# The onedir bundle (build/dist/docker-persist, built by build/build.sh when missing) is
# copied to ${XDG_DATA_HOME:-~/.local/share}/docker-persist/bundles/<version> (--system:
# /usr/local/lib/docker-persist/<version>; DOCKER_PERSIST_PREFIX overrides the folder),
# and `docker-persist` is symlinked into the Docker CLI plugin dir:
# ${DOCKER_CONFIG:-~/.docker}/cli-plugins (--system: /usr/local/lib/docker/cli-plugins).
# It only ever removes what it made: bundles carry a .docker-persist-bundle mark.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
system=0
uninstall=0
bundle=
usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }
mark=.docker-persist-bundle
# A bundle this script made: the mark, or (made before there was a mark) the bundle's own shape.
ours() { [ -d "$1" ] && [ ! -L "$1" ] && { [ -f "$1/$mark" ] || { [ -x "$1/docker-persist" ] && [ -d "$1/_internal" ]; }; }; }
while [ $# -gt 0 ]; do
    case "$1" in
        --system) system=1 ;;
        --uninstall) uninstall=1 ;;
        --bundle) bundle=${2:?--bundle needs a directory}; shift ;;
        --bundle=*) bundle=${1#--bundle=} ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

if [ "$system" = 1 ]; then
    prefix=${DOCKER_PERSIST_PREFIX:-/usr/local/lib/docker-persist}
    plugdir=/usr/local/lib/docker/cli-plugins
else
    prefix=${DOCKER_PERSIST_PREFIX:-${XDG_DATA_HOME:-$HOME/.local/share}/docker-persist/bundles}
    plugdir="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
fi
link="$plugdir/docker-persist"

if [ "$uninstall" = 1 ]; then
    if [ -L "$link" ]; then
        case "$(readlink "$link")" in
            "$prefix"/*) rm -f "$link"; echo "install: removed $link" >&2 ;;
            *) echo "install: $link points elsewhere ($(readlink "$link")); left alone" >&2 ;;
        esac
    elif [ -e "$link" ]; then
        echo "install: $link is not our symlink; left alone" >&2
    fi
    for bundle_dir in "$prefix"/* "$prefix"/.staging.*; do
        if ours "$bundle_dir"; then rm -rf "$bundle_dir"; echo "install: removed $bundle_dir" >&2; fi
    done
    rmdir "$prefix" 2>/dev/null || true  # only if nothing else is in it
    exit 0
fi

if [ -z "$bundle" ]; then
    bundle="$root/build/dist/docker-persist"
    [ -x "$bundle/docker-persist" ] || "$root/build/build.sh"
fi
[ -x "$bundle/docker-persist" ] || { echo "install: no bundle at $bundle" >&2; exit 1; }
version=$("$bundle/docker-persist" --version | awk '{print $NF}')

# Copy beside the target, then rename: a failed copy never replaces a working install.
mkdir -p "$prefix" "$plugdir"
target="$prefix/$version"
staging="$prefix/.staging.$$"
for old in "$staging" "$target.old"; do
    if [ -e "$old" ] || [ -L "$old" ]; then
        ours "$old" || { echo "install: $old is in the way and is not a docker-persist bundle; left alone" >&2; exit 1; }
        rm -rf "$old"
    fi
done
if { [ -e "$target" ] || [ -L "$target" ]; } && ! ours "$target"; then
    echo "install: $target exists and is not a docker-persist bundle; left alone" >&2
    exit 1
fi
cp -a "$bundle" "$staging"
touch "$staging/$mark"
[ -e "$target" ] && mv "$target" "$target.old"
mv "$staging" "$target"
if [ -e "$target.old" ]; then rm -rf "$target.old"; fi
ln -sfn "$target/docker-persist" "$link"

if command -v docker >/dev/null 2>&1 && ! out=$(docker persist --version 2>&1); then
    echo "install: warning: the docker CLI does not run the plugin: $out" >&2
fi
echo "install: docker-persist $version -> $link" >&2
