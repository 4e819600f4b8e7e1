"""This machine: spawning processes, the Docker CLI's config and contexts, docker-persist's state
directory (the journal of unfinished work, locks).
"""
