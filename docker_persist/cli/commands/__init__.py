"""The command registry: an explicit dict, which PyInstaller can follow.

Each command module is imported only when that command runs, so that `version` does
not pay for the imports of `check` (YAML, dataclasses, the rules).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from docker_persist.cli.commands.base import Command


class Entry(NamedTuple):
    """A registered command: its name and one-line summary, and how to load it."""

    name: str
    summary: str
    load: Callable[[], Command]
    # Shown in `docker persist --help` and in shell completion. Not: install-plugin (run as `docker-persist
    # install-plugin`) and compose (run by Docker Compose), which still run when named.
    listed: bool = True


def _backup() -> Command:
    from docker_persist.cli.commands import backup

    return backup.COMMAND


def _snapshots() -> Command:
    from docker_persist.cli.commands import snapshots

    return snapshots.COMMAND


def _restore() -> Command:
    from docker_persist.cli.commands import restore

    return restore.COMMAND


def _verify() -> Command:
    from docker_persist.cli.commands import verify

    return verify.COMMAND


def _forget() -> Command:
    from docker_persist.cli.commands import forget

    return forget.COMMAND


def _up() -> Command:
    from docker_persist.cli.commands import up

    return up.COMMAND


def _down() -> Command:
    from docker_persist.cli.commands import down

    return down.COMMAND


def _compose() -> Command:
    from docker_persist.cli.commands import compose

    return compose.COMMAND


def _init() -> Command:
    from docker_persist.cli.commands import init

    return init.COMMAND


def _protect() -> Command:
    from docker_persist.cli.commands import protect

    return protect.PROTECT


def _unprotect() -> Command:
    from docker_persist.cli.commands import protect

    return protect.UNPROTECT


def _pin() -> Command:
    from docker_persist.cli.commands import pin

    return pin.PIN


def _unpin() -> Command:
    from docker_persist.cli.commands import pin

    return pin.UNPIN


def _recover() -> Command:
    from docker_persist.cli.commands import recover

    return recover.COMMAND


def _copy() -> Command:
    from docker_persist.cli.commands import copy

    return copy.COMMAND


def _check() -> Command:
    from docker_persist.cli.commands import check

    return check.COMMAND


def _plan() -> Command:
    from docker_persist.cli.commands import plan

    return plan.COMMAND


def _schedule() -> Command:
    from docker_persist.cli.commands import schedule

    return schedule.COMMAND


def _metrics() -> Command:
    from docker_persist.cli.commands import metrics

    return metrics.COMMAND


def _install_plugin() -> Command:
    from docker_persist.cli.commands import install_plugin

    return install_plugin.COMMAND


def _completion() -> Command:
    from docker_persist.cli.commands import completion

    return completion.COMMAND


def _projects() -> Command:
    from docker_persist.cli.commands import projects

    return projects.COMMAND


def _store() -> Command:
    from docker_persist.cli.commands import store

    return store.COMMAND


def _ls() -> Command:
    from docker_persist.cli.commands import ls

    return ls.COMMAND


def _diff() -> Command:
    from docker_persist.cli.commands import diff

    return diff.COMMAND


def _status() -> Command:
    from docker_persist.cli.commands import status

    return status.COMMAND


def _version() -> Command:
    from docker_persist.cli.commands import version

    return version.COMMAND


COMMANDS: dict[str, Entry] = {
    entry.name: entry
    for entry in (
        Entry("backup", "Take a snapshot of the project's volumes", _backup),
        Entry("snapshots", "List the project's snapshots", _snapshots),
        Entry("ls", "List the files in a snapshot, without restoring it", _ls),
        Entry("diff", "Show what was added, removed and changed between two snapshots", _diff),
        Entry("projects", "List the projects a store holds snapshots of", _projects),
        Entry("store", "Create a restic repository (init), or have restic check it (check)", _store),
        Entry("restore", "Restore volumes from a snapshot by name", _restore),
        Entry("verify", "Run a restore drill and compare content digests", _verify),
        Entry("forget", "Remove snapshots by a retention policy", _forget),
        Entry("pin", "Keep snapshots from every retention policy", _pin),
        Entry("unpin", "Let retention policies forget snapshots again", _unpin),
        Entry("recover", "Finish or take back what an interrupted operation left", _recover),
        Entry("copy", "Copy snapshots to another store (e.g. off-site, to S3)", _copy),
        Entry("up", "Create, restore and protect the precious volumes, then run docker compose up", _up),
        Entry("down", "Back up what docker compose down would destroy, then run it", _down),
        Entry("protect", "Guard volumes so that the engine refuses to remove them", _protect),
        Entry("unprotect", "Remove the guards of volumes", _unprotect),
        Entry("init", "Add x-persist to the Compose file (or an override that .env names)", _init),
        Entry("compose", "The Compose provider entry point, run by Docker Compose", _compose, False),
        Entry("check", "Audit the project and the engine for data that could be lost or exposed", _check),
        Entry("plan", "Show what up or down would do, and change nothing", _plan),
        Entry(
            "schedule", "Back up on x-persist.schedule in the foreground, or install a unit or crontab line", _schedule
        ),
        Entry("status", "Show every known project's volumes: newest snapshot, drill, guard, failures", _status),
        Entry("metrics", "Show per-volume backup metrics in Prometheus' text format", _metrics),
        Entry("version", "Show the docker-persist, Docker engine and Compose versions", _version),
        Entry("completion", "Print the shell completion script for bash, zsh or fish", _completion),
        Entry("install-plugin", "Link this docker-persist into the Docker CLI's plugin folder", _install_plugin, False),
    )
}
