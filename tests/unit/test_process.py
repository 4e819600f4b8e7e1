"""What child processes inherit."""

from __future__ import annotations

from docker_persist.host.process import child_environ


def test_plugin_variables_are_not_inherited() -> None:
    environ = {"PATH": "/bin", "DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND": "docker", "DOCKER_HOST": "unix:///x"}
    assert child_environ(environ) == {"PATH": "/bin", "DOCKER_HOST": "unix:///x"}


def test_bundle_library_path_is_restored() -> None:
    frozen = {"LD_LIBRARY_PATH": "/bundle/_internal:/opt/lib", "LD_LIBRARY_PATH_ORIG": "/opt/lib",
              "_PYI_ARCHIVE_FILE": "/bundle/docker-persist", "HOME": "/h"}  # fmt: skip
    assert child_environ(frozen) == {"LD_LIBRARY_PATH": "/opt/lib", "HOME": "/h"}
    frozen_without_original = {"LD_LIBRARY_PATH": "/bundle/_internal", "_PYI_ARCHIVE_FILE": "/b"}
    assert child_environ(frozen_without_original) == {}


def test_unfrozen_library_path_is_kept() -> None:
    assert child_environ({"LD_LIBRARY_PATH": "/opt/lib"}) == {"LD_LIBRARY_PATH": "/opt/lib"}
