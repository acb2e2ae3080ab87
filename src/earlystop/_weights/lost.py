"""The warning for best weights that cannot be restored, and why they cannot."""

from __future__ import annotations

__all__ = ["LostWeightsWarning"]


class LostWeightsWarning(UserWarning):
    """The best weights cannot be restored (the model keeps its current weights).

    Raised as a warning where the end of training is no place to crash: ``restore_best_weights``
    at the stop, or an adapter's restore at the end of fit, after a resume without ``path``, a
    checkpoint that lags the best evaluation, or a keep that was interrupted. Filter it like any
    warning (``warnings.simplefilter("error", LostWeightsWarning)`` to make it an error);
    :meth:`earlystop.EarlyStopping.restore` raises instead.
    """
