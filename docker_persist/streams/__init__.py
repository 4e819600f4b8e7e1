"""Byte streams between the engine and a store: background stages, compression and encryption.
Memory stays flat whatever the stream's size.
"""
