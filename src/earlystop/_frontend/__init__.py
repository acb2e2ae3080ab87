"""The PyTorch front end (``EarlyStopping``) and the agreement across ranks.

Joins a stopper (``_core``, built from ``_rules``) with the weights (``_weights``).
"""
