"""What the user configured: the Compose project as frozen dataclasses, the x-persist schema, and
the table of well-known images. Pure: it imports nothing from the I/O layers (engine, store,
host, streams, actions, cli).
"""
