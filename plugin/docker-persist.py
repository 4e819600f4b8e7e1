"""PyInstaller entry point of the `docker-persist` CLI plugin binary."""

from docker_persist.plugin import entry

entry()
