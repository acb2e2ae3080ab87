"""Corpus v2: learning curves of workloads unlike corpus v1's small MLPs on tabular data.

Every run trains for its whole budget, whatever its curve does, so that any stopping
policy can be replayed on it afterwards (the format is ``earlystop.read_curves``'s: one row
per run and evaluation with ``train_loss``, ``val_loss``, ``test_loss``, ``val_acc``,
``test_acc`` and ``lr``). The ``epoch`` column is the evaluation's position in the run:
an epoch for runs evaluated once per epoch, the optimizer step for runs evaluated every k
steps (their names say ``every<k>``). ``train_loss`` is the mean training loss of the
mini-batches since the previous evaluation (no extra pass over the training set).

Workloads (the first part of every run name), all from local data:

- ``digits_cnn``: a tiny CNN on scikit-learn's 8x8 digits (600 train, 400 validation,
  397 clean test images; label noise on train and validation).
- ``mnist_cnn``: a small strided CNN on a subset of real MNIST when
  ``../shared/data/mnist`` holds the gzip IDX files (skipped otherwise), evaluated every
  k optimizer steps on 1000 validation and 1000 test images.
- ``mnist1d_cnn``: a 1-D CNN on a synthetic task in the spirit of mnist1d (ten 1-D
  templates, randomly shifted, scaled, sheared and noised; generated offline from a seed).
- ``modular``: an MLP or a one-layer transformer on ``(a + b) mod p`` or ``(a - b) mod p``
  from a fraction of all pairs, full batch with strong weight decay: late, sudden
  improvement (grokking-like), evaluated every k steps.
- ``finetune``: pre-train on one split (digits 0-4, or mnist1d with one noise level),
  then fine-tune a new head and the body on another (digits 5-9 with few labels, or
  mnist1d with other noise); only the fine-tuning is recorded.
- ``friedman_mlp`` (batch b only): an MLP regressing Friedman #1 (scikit-learn's
  generator) with Gaussian noise on the train and validation targets, clean test targets;
  mean squared error, no accuracy.
- ``seq_gru`` (batch b only): a GRU classifying sequences of 8 or 12 digits by their sum
  modulo 3 or 5 (long plateaus before the running state is learned).
- ``blobs_mlp`` (batch c only): an over-parametrized MLP (256 or 1024 wide) on
  scikit-learn's ``make_classification`` (5 classes, 400 training samples, label noise).
- ``digits_dae`` (batch c only): a denoising autoencoder on the 8x8 digits (mean squared
  error against the clean image, no accuracy).
- ``digits_bn`` (batch c only): a CNN with batch norm on the 8x8 digits, every training
  batch shifted by up to one pixel.

Schedules: constant, step, plateau, warm-up + cosine, one-cycle, cosine with restarts.
Configurations are drawn from one master seed; each is trained with three seeds
(consecutive runs). Configuration ``i`` depends only on ``(seed, i)``, so ``--runs N``
trains a prefix of ``--runs M`` for ``M > N``. Configurations 0-78 (*batch a*, the first
237 runs) have budgets of 100-300 evaluations; configurations 79-158 (*batch b*) are drawn
from another table: budgets of 200-1000 evaluations and two new workloads; configurations
159 on (*batch c*) from a third: three more workloads, budgets of 150-600 evaluations.

Each finished run is cached as one JSON file under ``--cache`` (default
``benchmarks/curves/.cache-v2/``, not committed), so an interrupted generation resumes where
it stopped; the corpus file is written from the cache at the end. Every run is seeded on
its own, so ``--jobs`` does not change the corpus::

    python benchmarks/curves/generate_v2.py --runs 612 --seed 0 --jobs 2   # the committed corpus

``--quick`` trains ten tiny runs (one per workload, two for ``modular``) for a few
evaluations, without a cache (a smoke test that takes seconds).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from generate import DEFAULT_MNIST, ROOT, step_scheduler  # one place says where the shared MNIST is

COLUMNS = ["train_loss", "test_loss", "val_acc", "test_acc", "lr"]
SEEDS_PER_CONFIG = 3


@dataclass(frozen=True)
class Config:
    """Everything that defines one run; ``name`` spells it out."""

    workload: str
    variant: str  # architecture / task details
    optimizer: str
    lr: float
    schedule: str
    noise: float
    batch: int  # 0 = full batch
    evals: int  # number of evaluations recorded
    every: int  # 0 = once per epoch, else every k optimizer steps
    seed: int
    group: int  # configuration number (the seeds of one configuration share it)

    @property
    def name(self) -> str:
        cadence = "epoch" if self.every == 0 else f"every{self.every}"
        return (
            f"{self.workload}/{self.variant}/{self.optimizer}/lr{self.lr:g}/{self.schedule}/"
            f"noise{self.noise:g}/b{self.batch}/{cadence}/n{self.evals}/g{self.group}/s{self.seed}"
        )

    def key(self) -> str:
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


# -- data -------------------------------------------------------------------------------

Split = tuple[np.ndarray, np.ndarray]


def _noisy(y: np.ndarray, rate: float, classes: int, rng: np.random.Generator) -> np.ndarray:
    y = y.copy()
    flip = rng.random(len(y)) < rate
    y[flip] = (y[flip] + rng.integers(1, classes, size=int(flip.sum()))) % classes
    return y


def digits_splits(
    seed: int, noise: float, classes: tuple[int, ...] = tuple(range(10)), n_train: int = 1000
) -> tuple[Split, Split, Split]:
    """Digits 8x8 images (N, 1, 8, 8) scaled to [0, 1]; labels renumbered from 0."""
    from sklearn.datasets import load_digits

    x_all, y_all = load_digits(return_X_y=True)
    keep = np.isin(y_all, classes)
    x_all = (x_all[keep] / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    y_all = np.searchsorted(np.array(classes), y_all[keep]).astype(np.int64)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x_all))
    n_test = min(397, len(order) // 4)
    n_val = min(400, len(order) // 4)
    test, val = order[:n_test], order[n_test : n_test + n_val]
    train = order[n_test + n_val :][:n_train]
    k = len(classes)
    return (
        (x_all[train], _noisy(y_all[train], noise, k, rng)),
        (x_all[val], _noisy(y_all[val], noise, k, rng)),
        (x_all[test], y_all[test]),
    )


_MNIST: dict[str, tuple[np.ndarray, ...]] = {}


def mnist_splits(mnist: Path, seed: int, noise: float, n_train: int) -> tuple[Split, Split, Split]:
    """A seeded MNIST subset: train/validation from the training file, test from t10k."""
    if "x" not in _MNIST:
        from earlystop._demo.idx import load_mnist  # the demo's checked IDX reader

        arrays = load_mnist(mnist)
        _MNIST["x"], _MNIST["y"] = arrays.train_images, arrays.train_labels
        _MNIST["tx"], _MNIST["ty"] = arrays.test_images, arrays.test_labels
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(_MNIST["x"]))[: n_train + 1000]
    test = rng.permutation(len(_MNIST["tx"]))[:1000]

    def images(raw: np.ndarray, index: np.ndarray) -> np.ndarray:
        return (raw[index].astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)

    y = _MNIST["y"].astype(np.int64)
    return (
        (images(_MNIST["x"], order[1000:]), _noisy(y[order[1000:]], noise, 10, rng)),
        (images(_MNIST["x"], order[:1000]), _noisy(y[order[:1000]], noise, 10, rng)),
        (images(_MNIST["tx"], test), _MNIST["ty"][test].astype(np.int64)),
    )


def mnist1d_like(n: int, rng: np.random.Generator, jitter: float) -> Split:
    """A synthetic 1-D digit task: ten fixed templates, randomly transformed and noised.

    The templates come from a fixed seed (the task is the same for every run); each sample
    is a template padded to 40 points, shifted, scaled, sheared, blurred with correlated
    noise and white noise of scale ``jitter``.
    """
    base = np.random.default_rng(1234)
    knots = base.normal(size=(10, 6))
    grid = np.linspace(0, 5, 12)
    templates = np.stack([np.interp(grid, np.arange(6), k) for k in knots])  # (10, 12)
    labels = rng.integers(0, 10, size=n)
    out = np.zeros((n, 40), np.float32)
    t = np.linspace(-1, 1, 40)
    for i, label in enumerate(labels):
        signal = np.zeros(40)
        start = int(rng.integers(4, 24))
        signal[start : start + 12] = templates[label] * rng.uniform(0.7, 1.3)
        signal = signal + rng.normal(0, 0.25) * t  # shear
        corr = np.convolve(rng.normal(0, jitter, 44), np.ones(5) / 5, mode="valid")
        out[i] = signal + corr + rng.normal(0, jitter * 0.6, 40)
    return out.reshape(n, 1, 40), labels.astype(np.int64)


def mnist1d_splits(
    seed: int, noise: float, jitter: float, n_train: int
) -> tuple[Split, Split, Split]:
    rng = np.random.default_rng(seed)
    (xt, yt), (xv, yv), (xs, ys) = (mnist1d_like(m, rng, jitter) for m in (n_train, 1000, 1000))
    return (xt, _noisy(yt, noise, 10, rng)), (xv, _noisy(yv, noise, 10, rng)), (xs, ys)


def modular_splits(seed: int, p: int, op: str, fraction: float) -> tuple[Split, Split, Split]:
    """All pairs (a, b) with the label (a op b) mod p; a fraction trains, the rest is split."""
    a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    x = np.stack([a.ravel(), b.ravel()], 1).astype(np.int64)
    y = ((x[:, 0] + x[:, 1]) if op == "add" else (x[:, 0] - x[:, 1])) % p
    order = np.random.default_rng(seed).permutation(len(x))
    n_train = int(fraction * len(x))
    rest = order[n_train:]
    half = len(rest) // 2
    return (
        (x[order[:n_train]], y[order[:n_train]]),
        (x[rest[:half]], y[rest[:half]]),
        (x[rest[half:]], y[rest[half:]]),
    )


def friedman_splits(seed: int, noise: float, n_train: int) -> tuple[Split, Split, Split]:
    """Friedman #1 regression (10 inputs, 5 of them used) with Gaussian noise of scale
    ``noise`` on the train and validation targets; the test targets are noise-free. Inputs
    and targets are standardized with the training set's statistics."""
    from sklearn.datasets import make_friedman1

    x, _ = make_friedman1(n_samples=n_train + 2000, noise=0.0, random_state=seed)
    clean = (
        10 * np.sin(np.pi * x[:, 0] * x[:, 1])
        + 20 * (x[:, 2] - 0.5) ** 2
        + 10 * x[:, 3]
        + 5 * x[:, 4]
    )
    rng = np.random.default_rng(seed)
    noisy = clean + rng.normal(0.0, noise, len(clean))
    mean, std = noisy[:n_train].mean(), noisy[:n_train].std()
    x = ((x - 0.5) / 0.29).astype(np.float32)

    def target(y: np.ndarray) -> np.ndarray:
        return ((y - mean) / std).astype(np.float32)

    val, test = slice(n_train, n_train + 1000), slice(n_train + 1000, None)
    return (
        (x[:n_train], target(noisy[:n_train])),
        (x[val], target(noisy[val])),
        (x[test], target(clean[test])),
    )


def sequence_splits(
    seed: int, noise: float, length: int, modulus: int
) -> tuple[Split, Split, Split]:
    """Sequences of ``length`` tokens 0-9; the label is their sum modulo ``modulus`` (a
    running state a recurrent net must learn to carry: long plateaus, then progress)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 10, size=(4000, length)).astype(np.int64)
    y = (x.sum(1) % modulus).astype(np.int64)
    return (
        (x[:2000], _noisy(y[:2000], noise, modulus, rng)),
        (x[2000:3000], _noisy(y[2000:3000], noise, modulus, rng)),
        (x[3000:], y[3000:]),
    )


def blobs_splits(seed: int, noise: float, informative: int) -> tuple[Split, Split, Split]:
    """scikit-learn's ``make_classification``: 5 classes, 40 features of which
    ``informative`` carry the label, 400 train, 1000 validation and 1000 test samples;
    label noise ``noise`` on train and validation only."""
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=2400,
        n_features=40,
        n_informative=informative,
        n_redundant=4,
        n_classes=5,
        n_clusters_per_class=2,
        class_sep=1.0,
        random_state=seed,
    )
    x = ((x - x[:400].mean(0)) / x[:400].std(0)).astype(np.float32)
    y = y.astype(np.int64)
    rng = np.random.default_rng(seed)
    return (
        (x[:400], _noisy(y[:400], noise, 5, rng)),
        (x[400:1400], _noisy(y[400:1400], noise, 5, rng)),
        (x[1400:], y[1400:]),
    )


def denoise_splits(seed: int, noise: float, n_train: int) -> tuple[Split, Split, Split]:
    """Denoising digits: the input is an 8x8 digit (flattened, in [0, 1]) plus Gaussian
    noise of scale ``noise``, the target the clean image; noise drawn once per sample."""
    from sklearn.datasets import load_digits

    x = (load_digits().data / 16.0).astype(np.float32)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    parts = order[:n_train], order[n_train : n_train + 400], order[n_train + 400 : n_train + 800]

    def pair(index: np.ndarray) -> Split:
        clean = x[index]
        return (clean + rng.normal(0, noise, clean.shape)).astype(np.float32), clean

    train, val, test = (pair(i) for i in parts)
    return train, val, test


# -- models ---------------------------------------------------------------------------


def build_model(config: Config) -> Any:
    import torch
    from torch import nn

    v = config.variant
    if config.workload in ("digits_cnn", "finetune") and v.startswith("digits"):
        c = 8 if "c8" in v else 4
        return nn.Sequential(
            nn.Conv2d(1, c, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(c, 2 * c, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Dropout(0.25 if "drop" in v else 0.0),
            nn.Linear(2 * c * 16, 10),
        )
    if config.workload == "mnist_cnn":
        c = 8 if "c8" in v else 4
        return nn.Sequential(
            nn.Conv2d(1, c, 5, stride=2),
            nn.ReLU(),
            nn.Conv2d(c, 2 * c, 3, stride=2),
            nn.ReLU(),
            nn.Flatten(),
            nn.Dropout(0.25 if "drop" in v else 0.0),
            nn.Linear(2 * c * 25, 10),
        )
    if config.workload in ("mnist1d_cnn", "finetune"):
        c = 16 if "c16" in v else 8
        return nn.Sequential(
            nn.Conv1d(1, c, 5, padding=2),
            nn.ReLU(),
            nn.Conv1d(c, c, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv1d(c, c, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(c * 10, 10),
        )
    if config.workload == "friedman_mlp":
        width = int(v.split("-")[0][1:])
        return nn.Sequential(
            nn.Linear(10, width),
            nn.ReLU(),
            nn.Linear(width, width),
            nn.ReLU(),
            nn.Dropout(0.2 if "drop" in v else 0.0),
            nn.Linear(width, 1),
            nn.Flatten(0),
        )
    if config.workload == "blobs_mlp":
        width = int(v.split("-")[0][1:])
        return nn.Sequential(
            nn.Linear(40, width),
            nn.ReLU(),
            nn.Linear(width, width),
            nn.ReLU(),
            nn.Linear(width, 5),
        )
    if config.workload == "digits_dae":
        hidden = int(v.split("-")[0][1:])
        return nn.Sequential(
            nn.Linear(64, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 64),
        )
    if config.workload == "digits_bn":
        c = 8 if "c8" in v else 16
        return nn.Sequential(
            nn.Conv2d(1, c, 3, padding=1),
            nn.BatchNorm2d(c),
            nn.ReLU(),
            nn.Conv2d(c, 2 * c, 3, padding=1),
            nn.BatchNorm2d(2 * c),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(2 * c * 16, 10),
        )
    if config.workload == "seq_gru":
        hidden, modulus = int(v.split("-")[0][1:]), int(v.split("-")[2][3:])

        class Gru(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.embed = nn.Embedding(10, 16)
                self.gru = nn.GRU(16, hidden, batch_first=True)
                self.head = nn.Linear(hidden, modulus)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                _, last = self.gru(self.embed(x))
                return self.head(last[0])

        return Gru()
    # modular
    p = int(v.split("-")[1][1:])
    width = 64

    class Mlp(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(p, width)
            self.body = nn.Sequential(nn.Linear(2 * width, 128), nn.ReLU(), nn.Linear(128, p))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(self.embed(x).flatten(1))

    class Transformer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(p, 32)
            self.pos = nn.Parameter(torch.randn(2, 32) * 0.1)
            self.layer = nn.TransformerEncoderLayer(
                32, 2, dim_feedforward=64, dropout=0.0, batch_first=True
            )
            self.head = nn.Linear(32, p)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.layer(self.embed(x) + self.pos)
            return self.head(h.mean(1))

    return Transformer() if v.startswith("tf") else Mlp()


def build_optimizer(config: Config, params: Any) -> Any:
    import torch

    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=0.9)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr)
    wd = 1.0 if config.workload == "modular" else 0.01
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=wd)


def build_scheduler(name: str, optimizer: Any, evals: int) -> Any:
    """A scheduler stepped once per evaluation (``evals`` steps in all)."""
    import torch

    s = torch.optim.lr_scheduler
    if name == "step":
        return s.MultiStepLR(optimizer, [evals // 2, (3 * evals) // 4], gamma=0.1)
    if name == "plateau":
        return s.ReduceLROnPlateau(optimizer, factor=0.2, patience=max(5, evals // 20))
    if name == "warmup_cosine":
        warm = max(1, evals // 20)

        def factor(i: int) -> float:
            if i < warm:
                return (i + 1) / warm
            return 0.5 * (1 + math.cos(math.pi * (i - warm) / max(1, evals - warm)))

        return s.LambdaLR(optimizer, factor)
    if name == "onecycle":
        return s.OneCycleLR(optimizer, optimizer.param_groups[0]["lr"], total_steps=evals + 1)
    if name == "restarts":
        return s.CosineAnnealingWarmRestarts(optimizer, T_0=max(2, evals // 4))
    return None


# -- configurations ---------------------------------------------------------------------

WORKLOADS = {  # share of configurations
    "digits_cnn": 0.22,
    "mnist_cnn": 0.18,
    "mnist1d_cnn": 0.22,
    "modular": 0.18,
    "finetune": 0.20,
}
SCHEDULES = ("constant", "step", "plateau", "warmup_cosine", "onecycle", "restarts")
Pick = Callable[[list[Any]], Any]


def _start(
    rng: np.random.Generator, shares: dict[str, float], with_mnist: bool
) -> tuple[str, str, Pick]:
    """The first draws of every configuration: its workload (by ``shares``, MNIST only when
    present), its schedule, and ``pick``, a uniform choice from a list on the same stream."""
    names = [n for n in shares if with_mnist or n != "mnist_cnn"]
    weights = np.array([shares[n] for n in names])
    workload = str(names[rng.choice(len(names), p=weights / weights.sum())])
    schedule = str(rng.choice(SCHEDULES))

    def pick(options: list[Any]) -> Any:
        return options[int(rng.integers(len(options)))]

    return workload, schedule, pick


def _optimizer_and_lr(pick: Pick) -> tuple[str, float]:
    """Batches b and c: SGD, Adam or AdamW and a learning rate from its grid."""
    optimizer = pick(["sgd", "adam", "adamw"])
    grid = {"sgd": [0.01, 0.03, 0.1], "adam": [0.0003, 0.001, 0.003]}
    return optimizer, pick(grid.get(optimizer, [0.001, 0.003]))


def _config(
    workload: str,
    variant: str,
    optimizer: str,
    lr: float,
    schedule: str,
    noise: float,
    batch: int,
    evals: int,
    every: int,
    group: int,
) -> Config:
    """A configuration's base (seed 0; :func:`sample_configs` sets the seeds)."""
    return Config(
        workload,
        variant,
        optimizer,
        float(lr),
        schedule,
        float(noise),
        int(batch),
        int(evals),
        int(every),
        0,
        group,
    )


def sample_config(seed: int, group: int, with_mnist: bool) -> Config:
    """Configuration number ``group``, from ``(seed, group)`` only."""
    rng = np.random.default_rng([seed, group])
    workload, schedule, pick = _start(rng, WORKLOADS, with_mnist)
    if workload == "digits_cnn":
        variant = pick(["digits-c4", "digits-c8", "digits-c8-drop"])
        optimizer = pick(["sgd", "adam", "adamw"])
        lr = pick(
            {"sgd": [0.01, 0.03, 0.1], "adam": [0.001, 0.003, 0.01]}.get(optimizer, [0.001, 0.003])
        )
        noise, batch, evals, every = (
            pick([0.0, 0.1, 0.2, 0.3]),
            128,
            pick([100, 120]),
            pick([0, 2, 2, 3]),
        )
    elif workload == "mnist_cnn":
        variant = pick(["n1500-c4", "n3000-c4", "n1500-c8-drop", "n3000-c8"])
        optimizer = pick(["sgd", "adam", "adamw"])
        lr = pick(
            {"sgd": [0.01, 0.03, 0.1], "adam": [0.0005, 0.001, 0.003]}.get(
                optimizer, [0.001, 0.003]
            )
        )
        noise, batch = pick([0.0, 0.1, 0.2]), pick([32, 64])
        evals, every = pick([100, 120]), pick([2, 3])
    elif workload == "mnist1d_cnn":
        variant = pick(["n2000-j0.3-c8", "n2000-j0.5-c16", "n1000-j0.4-c8", "n1000-j0.4-c16"])
        optimizer = pick(["sgd", "adam", "adamw"])
        lr = pick(
            {"sgd": [0.01, 0.03, 0.1], "adam": [0.001, 0.003, 0.01]}.get(optimizer, [0.001, 0.003])
        )
        noise, batch = pick([0.0, 0.1, 0.2]), 128
        evals, every = pick([100, 150]), pick([0, 2, 3])
    elif workload == "modular":
        p = pick([31, 41])
        arch = pick(["mlp", "mlp", "mlp", "tf"])
        variant = f"{arch}-p{p}-{pick(['add', 'sub'])}-f{pick([0.4, 0.5, 0.6])}"
        optimizer, lr = "adamw", (0.003 if arch == "tf" else pick([0.005, 0.01]))
        schedule = pick(["constant", "constant", "warmup_cosine", "step"])
        noise, batch = 0.0, 0
        evals, every = pick([200, 300]), pick([5, 8])
    else:  # finetune
        variant = pick(
            [
                "digits-c8-from04",
                "digits-c4-from04",
                "mnist1d-c8-j0.3to0.5",
                "mnist1d-c16-j0.2to0.5",
            ]
        )
        optimizer = pick(["sgd", "adam"])
        lr = pick({"sgd": [0.003, 0.01, 0.03], "adam": [0.0003, 0.001, 0.003]}[optimizer])
        noise, batch = pick([0.0, 0.1, 0.2]), 64
        evals, every = pick([100, 120]), 0
    return _config(workload, variant, optimizer, lr, schedule, noise, batch, evals, every, group)


BATCH_B_FROM = 79  # configurations 0-78 are batch a (the first 237 runs), 79-158 batch b
WORKLOADS_B = {
    "digits_cnn": 0.10,
    "mnist_cnn": 0.12,
    "mnist1d_cnn": 0.14,
    "modular": 0.14,
    "finetune": 0.10,
    "friedman_mlp": 0.20,
    "seq_gru": 0.20,
}


def sample_config_b(seed: int, group: int, with_mnist: bool) -> Config:
    """Batch b: long budgets (200-1000 evaluations) for batch a's workloads, and two
    workloads batch a does not have (a regression MLP and a recurrent net)."""
    rng = np.random.default_rng([seed, group, 2])
    workload, schedule, pick = _start(rng, WORKLOADS_B, with_mnist)
    optimizer, lr = _optimizer_and_lr(pick)
    noise, batch = pick([0.0, 0.1, 0.2]), 128
    if workload == "digits_cnn":
        variant = pick(["digits-c4", "digits-c8", "digits-c8-drop"])
        evals, every = pick([300, 500]), pick([1, 2])
    elif workload == "mnist_cnn":
        variant = pick(["n1500-c4", "n3000-c8", "n3000-c8-drop"])
        batch, evals, every = 64, pick([200, 400]), pick([3, 5])
    elif workload == "mnist1d_cnn":
        variant = pick(["n2000-j0.3-c8", "n2000-j0.5-c16", "n1000-j0.4-c16"])
        evals, every = pick([400, 600, 1000]), pick([1, 2])
    elif workload == "modular":
        p = pick([31, 41])
        arch = pick(["mlp", "mlp", "tf"])
        variant = f"{arch}-p{p}-{pick(['add', 'sub'])}-f{pick([0.3, 0.4, 0.5])}"
        optimizer, lr = "adamw", (0.003 if arch == "tf" else pick([0.003, 0.005, 0.01]))
        schedule = pick(["constant", "constant", "warmup_cosine", "step", "onecycle"])
        noise, batch, evals, every = 0.0, 0, pick([500, 800, 1000]), pick([2, 4])
    elif workload == "finetune":
        variant = pick(["digits-c8-from04", "mnist1d-c16-j0.2to0.5", "mnist1d-c8-j0.3to0.5"])
        optimizer = pick(["sgd", "adam"])
        lr = pick({"sgd": [0.003, 0.01, 0.03], "adam": [0.0003, 0.001, 0.003]}[optimizer])
        batch, evals, every = 64, pick([200, 300]), 0
    elif workload == "friedman_mlp":
        variant = f"{pick(['w64', 'w256-drop'])}-n{pick([500, 1000])}"
        noise = pick([0.5, 1.0, 2.0])  # the target's noise scale, not label flips
        batch, evals, every = pick([32, 128]), pick([200, 400, 600]), pick([0, 4])
    else:  # seq_gru
        variant = f"h{pick([32, 64])}-L{pick([8, 12])}-mod{pick([3, 5])}"
        evals, every = pick([300, 500]), pick([4, 8])
    return _config(workload, variant, optimizer, lr, schedule, noise, batch, evals, every, group)


BATCH_C_FROM = 159  # configurations 159 on are batch c
WORKLOADS_C = {"blobs_mlp": 0.35, "digits_dae": 0.30, "digits_bn": 0.35}


def sample_config_c(seed: int, group: int, with_mnist: bool) -> Config:
    """Batch c: three workloads neither earlier batch has (an over-parametrized MLP on
    synthetic classes, a denoising autoencoder, a CNN with batch norm and shifted inputs),
    budgets of 150-600 evaluations."""
    rng = np.random.default_rng([seed, group, 3])
    workload, schedule, pick = _start(rng, WORKLOADS_C, with_mnist)  # batch c has no MNIST
    optimizer, lr = _optimizer_and_lr(pick)
    if workload == "blobs_mlp":
        variant = f"w{pick([256, 1024])}-i{pick([5, 10, 20])}"
        noise, batch = pick([0.0, 0.1, 0.2, 0.3]), pick([32, 400])
        evals, every = pick([200, 400, 600]), 0
    elif workload == "digits_dae":
        variant = f"h{pick([32, 256])}-n{pick([200, 600])}"
        noise, batch = pick([0.2, 0.4]), 32  # the input noise scale
        evals, every = pick([150, 300, 500]), pick([0, 3])
    else:  # digits_bn
        variant = f"c{pick([8, 16])}-shift"
        noise, batch = pick([0.0, 0.1, 0.2]), 64
        evals, every = pick([150, 300]), pick([0, 2])
    return _config(workload, variant, optimizer, lr, schedule, noise, batch, evals, every, group)


def sample_configs(runs: int, seed: int, with_mnist: bool) -> list[Config]:
    """``runs`` runs: configurations in order, each with ``SEEDS_PER_CONFIG`` seeds."""
    configs: list[Config] = []
    group = 0
    while len(configs) < runs:
        draw = (
            sample_config
            if group < BATCH_B_FROM
            else sample_config_b
            if group < BATCH_C_FROM
            else sample_config_c
        )
        base = draw(seed, group, with_mnist)
        for s in range(SEEDS_PER_CONFIG):
            if len(configs) < runs:
                configs.append(Config(**{**asdict(base), "seed": 1000 * group + s}))
        group += 1
    return configs


# -- training -----------------------------------------------------------------------------


def load_splits(config: Config, mnist: Path) -> tuple[Split, Split, Split]:
    v = config.variant
    if config.workload == "digits_cnn":
        return digits_splits(config.seed, config.noise, n_train=600)
    if config.workload == "mnist_cnn":
        return mnist_splits(mnist, config.seed, config.noise, int(v.split("-")[0][1:]))
    if config.workload == "mnist1d_cnn":
        n, j = v.split("-")[:2]
        return mnist1d_splits(config.seed, config.noise, float(j[1:]), int(n[1:]))
    if config.workload == "modular":
        _, p, op, f = v.split("-")
        return modular_splits(config.seed, int(p[1:]), op, float(f[1:]))
    if config.workload == "friedman_mlp":
        return friedman_splits(config.seed, config.noise, int(v.split("-n")[1]))
    if config.workload == "blobs_mlp":
        return blobs_splits(config.seed, config.noise, int(v.split("-i")[1]))
    if config.workload == "digits_dae":
        return denoise_splits(config.seed, config.noise, int(v.split("-n")[1]))
    if config.workload == "digits_bn":
        return digits_splits(config.seed, config.noise, n_train=600)
    if config.workload == "seq_gru":
        _, length, modulus = v.split("-")
        return sequence_splits(config.seed, config.noise, int(length[1:]), int(modulus[3:]))
    if v.startswith("digits"):  # fine-tune on 5-9 with few labels
        return digits_splits(config.seed, config.noise, (5, 6, 7, 8, 9), n_train=150)
    jitter = float(v.split("to")[1])
    return mnist1d_splits(config.seed, config.noise, jitter, 200)


def pretrain(config: Config, model: Any, mnist: Path) -> None:
    """Fine-tuning runs: pre-train the body on another split, then reset the head."""
    import torch
    from torch import nn

    v = config.variant
    if v.startswith("digits"):
        (x, y), _, _ = digits_splits(config.seed + 1, 0.0, (0, 1, 2, 3, 4), n_train=500)
    else:
        jitter = float(v.split("-j")[1].split("to")[0])
        (x, y), _, _ = mnist1d_splits(config.seed + 1, 0.0, jitter, 1000)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.003)
    for _ in range(10):
        for batch in torch.split(torch.randperm(len(xt)), 64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(xt[batch]), yt[batch]).backward()
            optimizer.step()
    head = model[-1]
    head.reset_parameters()


def train_run(config: Config, mnist: Path, record: Callable[..., None]) -> None:
    """Train ``config`` for its whole budget, calling ``record`` after every evaluation."""
    import torch
    from torch import nn

    torch.manual_seed(config.seed)
    (xt, yt), (xv, yv), (xs, ys) = (
        (torch.as_tensor(x), torch.as_tensor(y)) for x, y in load_splits(config, mnist)
    )
    model = build_model(config)
    if config.workload == "finetune":
        pretrain(config, model, mnist)
    optimizer = build_optimizer(config, model.parameters())
    scheduler = build_scheduler(config.schedule, optimizer, config.evals)
    regression = config.workload in ("friedman_mlp", "digits_dae")
    loss_fn: Any = nn.MSELoss() if regression else nn.CrossEntropyLoss()

    def evaluate(x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        out = model(x)
        if regression:
            return float(loss_fn(out, y)), math.nan
        return float(loss_fn(out, y)), float((out.argmax(1) == y).float().mean())

    def batches() -> Any:
        while True:
            if config.batch == 0:
                yield slice(None)
                continue
            yield from torch.split(torch.randperm(len(xt)), config.batch)

    stream = batches()
    steps_per_epoch = 1 if config.batch == 0 else math.ceil(len(xt) / config.batch)
    steps = config.every or steps_per_epoch
    step = 0
    for evaluation in range(1, config.evals + 1):
        lr = optimizer.param_groups[0]["lr"]
        model.train()
        losses = []
        for _ in range(steps):
            batch = next(stream)
            optimizer.zero_grad()
            inputs = xt[batch]
            if config.workload == "digits_bn":  # shift each image by up to one pixel
                dx, dy = (int(d) for d in torch.randint(-1, 2, (2,)))
                inputs = torch.roll(inputs, shifts=(dy, dx), dims=(2, 3))
            loss = loss_fn(model(inputs), yt[batch])
            if torch.isfinite(loss):
                loss.backward()
                optimizer.step()
            losses.append(float(loss.detach()))
            step += 1
        model.eval()
        with torch.no_grad():
            val_loss, val_acc = evaluate(xv, yv)
            test_loss, test_acc = evaluate(xs, ys)
        record(
            config.name,
            step if config.every else evaluation,
            val_loss,
            train_loss=float(np.mean(losses)),
            test_loss=test_loss,
            val_acc=val_acc,
            test_acc=test_acc,
            lr=lr,
        )
        step_scheduler(scheduler, val_loss)


def run_rows(config: Config, mnist: Path) -> list[list[Any]]:
    rows: list[list[Any]] = []
    train_run(
        config,
        mnist,
        lambda run, epoch, val, **m: rows.append([epoch, val, *(m[c] for c in COLUMNS)]),
    )
    return rows


def _train_and_cache(job: tuple[Config, str, str | None]) -> tuple[list[list[Any]], float]:
    """Train one run (in a worker process) and cache it; its rows and its CPU seconds."""
    import torch

    config, mnist, cache = job
    torch.set_num_threads(1)
    began = time.process_time()
    rows = run_rows(config, Path(mnist))
    seconds = time.process_time() - began
    if cache is not None:
        path = Path(cache) / f"{config.key()}.json"
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"name": config.name, "cpu_s": seconds, "rows": rows}))
        tmp.replace(path)
    return rows, seconds


def quick_configs() -> list[Config]:
    return [
        Config("digits_cnn", "digits-c4", "adam", 0.003, "warmup_cosine", 0.1, 64, 4, 0, 0, 0),
        Config("mnist1d_cnn", "n1000-j0.4-c8", "sgd", 0.03, "onecycle", 0.1, 128, 4, 0, 1, 1),
        Config("modular", "mlp-p31-add-f0.4", "adamw", 0.003, "constant", 0.0, 0, 4, 5, 2, 2),
        Config("modular", "tf-p31-sub-f0.4", "adamw", 0.001, "restarts", 0.0, 0, 4, 5, 3, 3),
        Config("finetune", "digits-c4-from04", "adam", 0.001, "plateau", 0.0, 16, 4, 0, 4, 4),
        Config("friedman_mlp", "w64-n500", "adam", 0.003, "onecycle", 1.0, 32, 4, 0, 5, 5),
        Config("seq_gru", "h32-L8-mod3", "adam", 0.003, "step", 0.1, 128, 4, 4, 6, 6),
        Config("blobs_mlp", "w256-i5", "sgd", 0.03, "constant", 0.2, 32, 4, 0, 7, 7),
        Config("digits_dae", "h32-n200", "adam", 0.003, "onecycle", 0.4, 32, 4, 3, 8, 8),
        Config("digits_bn", "c8-shift", "adamw", 0.003, "restarts", 0.1, 64, 4, 0, 9, 9),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=612, help="number of runs (default 612)")
    parser.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "curves" / "corpus_v2.csv.gz"))
    parser.add_argument("--cache", default=str(ROOT / "benchmarks" / "curves" / ".cache-v2"))
    parser.add_argument("--mnist", default=str(DEFAULT_MNIST), help="MNIST gzip IDX folder")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--quick", action="store_true", help="10 tiny runs, no cache (smoke test)")
    parser.add_argument(
        "--train-only", action="store_true", help="fill the cache, do not write the corpus"
    )
    args = parser.parse_args(argv)

    import torch

    from earlystop import CurveRecorder

    torch.set_num_threads(1)
    mnist = Path(args.mnist)
    with_mnist = (mnist / "train-images-idx3-ubyte.gz").exists()
    configs = quick_configs() if args.quick else sample_configs(args.runs, args.seed, with_mnist)
    cache = None if args.quick else Path(args.cache)
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results: dict[int, list[list[Any]]] = {}
    todo: list[int] = []
    for number, config in enumerate(configs):
        path = None if cache is None else cache / f"{config.key()}.json"
        if path is not None and path.exists():
            results[number] = json.loads(path.read_text())["rows"]
        else:
            todo.append(number)
    trained = 0.0
    jobs = [(configs[n], str(mnist), None if cache is None else str(cache)) for n in todo]
    pool = ProcessPoolExecutor(args.jobs) if args.jobs > 1 and len(jobs) > 1 else None
    # every run is seeded on its own, so the corpus does not depend on --jobs
    outputs = pool.map(_train_and_cache, jobs) if pool else map(_train_and_cache, jobs)
    for done, (number, (rows, seconds)) in enumerate(zip(todo, outputs, strict=True), 1):
        trained += seconds
        results[number] = rows
        print(f"[{done}/{len(todo)}] {configs[number].name} {seconds:.1f} CPU-s", flush=True)
    if pool is not None:
        pool.shutdown()
    if args.train_only:
        return 0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with CurveRecorder(out, columns=COLUMNS) as recorder:
        for number, config in enumerate(configs):
            rows = results[number]
            for epoch, val, *rest in rows:
                recorder.record(
                    config.name, int(epoch), val, **dict(zip(COLUMNS, rest, strict=True))
                )
    cpu = 0.0
    if cache is not None:
        cpu = sum(json.loads((cache / f"{c.key()}.json").read_text())["cpu_s"] for c in configs)
    meta = {
        "command": "python benchmarks/curves/generate_v2.py " + " ".join(sys.argv[1:]),
        "runs": len(configs),
        "configurations": len({c.group for c in configs}),
        "seed": args.seed,
        "quick": args.quick,
        "mnist": with_mnist,
        "workloads": {
            w: n
            for w in (*WORKLOADS_B, *WORKLOADS_C)
            if (n := sum(c.workload == w for c in configs))
        },
        "batch_b_runs": sum(BATCH_B_FROM <= c.group < BATCH_C_FROM for c in configs),
        "batch_c_runs": sum(c.group >= BATCH_C_FROM for c in configs),
        "evaluations": sum(len(r) for r in results.values()),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "training_cpu_seconds": round(cpu or trained, 1),
    }
    out.with_name(out.name.split(".")[0] + ".json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {len(configs)} runs to {out} in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
