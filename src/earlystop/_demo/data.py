"""The demo's data sets and their default training setups (presets).

Arrays are numpy here; the training module turns them into tensors. Splits are seeded, so
the same ``seed`` gives the same train/validation/test partition.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .idx import load_mnist

__all__ = ["DATASETS", "PRESETS", "DemoData", "Preset", "load_data"]

DATASETS = ("digits", "mnist")


@dataclass(frozen=True)
class Preset:
    """The default training setup of one data set (each field can be overridden by a flag).

    Attributes:
        hidden: widths of the hidden layers of the MLP (each Linear, ReLU, then Dropout).
        dropout: dropout probability after each hidden layer (0: none).
        lr: Adam learning rate.
        batch_size: training mini-batch size.
        epochs: the training budget.
        patience: early-stopping patience, in epochs.
    """

    hidden: tuple[int, ...]
    dropout: float
    lr: float
    batch_size: int
    epochs: int
    patience: int


PRESETS: dict[str, Preset] = {
    # A wide MLP on a small training split of the 1797 digits: it fits the training set
    # within a few dozen epochs, then the validation loss climbs (over-confidence).
    "digits": Preset(
        hidden=(256, 256), dropout=0.0, lr=3e-3, batch_size=32, epochs=100, patience=10
    ),
    # The MNIST notebook's setup: MLP 784-128-128-10, ReLU, Dropout(0.5), Adam 1e-3,
    # batch 256, at most 100 epochs, patience 20.
    "mnist": Preset(
        hidden=(128, 128), dropout=0.5, lr=1e-3, batch_size=256, epochs=100, patience=20
    ),
}


@dataclass(frozen=True)
class DemoData:
    """Train, validation and test arrays: features float32 ``(n, d)``, labels int64 ``(n,)``."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def n_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_val.max(), self.y_test.max())) + 1

    def sizes(self) -> dict[str, int]:
        """Number of examples per split."""
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}


def _split(n: int, fractions: tuple[float, ...], seed: int) -> list[np.ndarray]:
    """A seeded random partition of ``range(n)``; the last part takes the remainder."""
    order = np.random.default_rng(seed).permutation(n)
    parts, start = [], 0
    for fraction in fractions:
        stop = start + round(fraction * n)
        parts.append(order[start:stop])
        start = stop
    parts.append(order[start:])
    return parts


def _digits(seed: int) -> DemoData:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    y = y.astype(np.int64)
    # 25% train, 25% validation, 50% test: a small training set makes over-fitting visible.
    train, val, test = _split(len(y), (0.25, 0.25), seed)
    return DemoData("digits", x[train], y[train], x[val], y[val], x[test], y[test])


def _mnist(data_dir: str | Path, seed: int) -> DemoData:
    arrays = load_mnist(data_dir)
    # As the notebook: pixels scaled to [0, 1] (ToTensor), a random 80/20 split of the
    # 60k training images into train and validation, the 10k test images as test.
    x = arrays.train_images.reshape(len(arrays.train_images), -1).astype(np.float32) / 255.0
    y = arrays.train_labels.astype(np.int64)
    train, val = _split(len(y), (0.8,), seed)
    x_test = arrays.test_images.reshape(len(arrays.test_images), -1).astype(np.float32) / 255.0
    y_test = arrays.test_labels.astype(np.int64)
    return DemoData("mnist", x[train], y[train], x[val], y[val], x_test, y_test)


def load_data(name: str, *, seed: int, data_dir: str | Path | None = None) -> DemoData:
    """Load and split a demo data set.

    Args:
        name: ``"digits"`` (scikit-learn's bundled 8x8 digits) or ``"mnist"``.
        seed: seed of the random split.
        data_dir: folder with the four MNIST IDX files (required for ``"mnist"``).

    Raises:
        ValueError: unknown ``name``, or ``data_dir`` missing for MNIST.
        IdxError: an MNIST file is missing or malformed.
    """
    if name == "digits":
        return _digits(seed)
    if name == "mnist":
        if data_dir is None:
            raise ValueError("`data_dir` is required for the mnist data set, got None")
        return _mnist(data_dir, seed)
    raise ValueError(f"`name` must be one of {', '.join(DATASETS)}, got {name!r}")
