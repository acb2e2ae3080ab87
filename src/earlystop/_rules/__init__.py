"""Plug-in stopping rules: criteria, composition, smoothing, scheduler awareness, SPECs.

Built on ``earlystop._core`` only.
"""
