"""The pure core: live state as data, check rules and findings, the up/down planner, retention,
cron, the snapshot manifest, the archive content digest, metrics and the scheduler's loop.
Every function maps data to data; nothing here touches the engine, a store, a process or the
clock unless it is handed one. It imports nothing from the I/O layers.
"""
