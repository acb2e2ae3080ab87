"""Weight keeping: the in-memory keeper, checkpoint files and the background writer.

torch is imported lazily, where weights are; nothing here decides anything.
"""
