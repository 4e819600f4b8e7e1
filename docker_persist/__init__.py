"""docker-persist: keep Docker volume data safe with snapshots, guards and checks."""

__version__ = "0.1.0"
