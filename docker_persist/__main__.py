from docker_persist.plugin import entry

entry()
