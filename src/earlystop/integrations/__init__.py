"""Adapters that drive earlystop from training frameworks.

Each framework has its own module, imported explicitly; this package imports none of
them (nor torch), so a missing framework costs nothing until its adapter is used:

- :mod:`earlystop.integrations.lightning`: ``EarlyStopping`` (a subclass of Lightning's)
- :mod:`earlystop.integrations.transformers`: ``EarlyStoppingCallback`` (HF's arguments)
- :mod:`earlystop.integrations.ignite`: ``EarlyStopping`` (a subclass of Ignite's)
- :mod:`earlystop.integrations.optuna`: ``EarlyStoppingPruner`` (an Optuna pruner)
- :mod:`earlystop.integrations.ray`: ``EarlyStoppingStopper`` (a Ray Tune ``Stopper``)

Each takes its framework's own constructor, so migrating is changing the import line.
Importing one of them without its framework raises ``ImportError`` naming the extra to
install, such as ``pip install 'earlystop[lightning]'``.
"""

from __future__ import annotations

__all__: list[str] = []
