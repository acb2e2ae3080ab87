"""The decision core: decisions, options, values, history and the stopper.

Pure Python; imports nothing else of earlystop. Plug-ins (smoothers, scheduler rules,
the SPEC language) live in ``earlystop._rules`` and reach the stopper through the
protocols of :mod:`earlystop._core.protocols`.
"""
