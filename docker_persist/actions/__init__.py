"""The use cases, one module each: backup, restore, verify, forget, copy, up, down, protect,
schedule. Each takes an engine, a store and the project, and carries out one operation with its
locking, journaling and clean-up. The CLI calls exactly one action per command.
"""
