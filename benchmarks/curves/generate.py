"""Train many small models for their full epoch budget and record their learning curves.

The output is an earlystop curves file (see ``earlystop.read_curves``): one row per run and
epoch with ``train_loss``, ``val_loss``, ``test_loss``, ``val_acc``/``test_acc`` (on
classification) and ``lr``. Every run trains for its whole budget, whatever its curve
does, so that any stopping policy can be replayed on it afterwards.

Data is local: scikit-learn's bundled digits, breast_cancer and wine (with label noise
injected into the training and validation labels; the test labels stay clean), diabetes
regression, and a real MNIST subset when ``../shared/data/mnist`` (relative to the
repository root) holds the gzip IDX files. Configurations (architecture, optimizer,
learning rate, schedule with step or plateau drops, a few runs whose learning rate is
ramped until they diverge, label noise, batch size, seed) are drawn from one master seed,
and the run name spells the whole configuration, so the corpus is reproducible:

    python benchmarks/curves/generate.py --runs 300 --seed 0 --out benchmarks/curves/corpus.csv.gz

``--quick`` trains three tiny runs for a few epochs (a smoke test that takes seconds).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
# ../shared/data/mnist from the repository root (a git worktree may sit one level deeper).
DEFAULT_MNIST = next(
    (
        base / "shared" / "data" / "mnist"
        for base in (ROOT.parent, ROOT.parent.parent)
        if (base / "shared" / "data" / "mnist").is_dir()
    ),
    ROOT.parent / "shared" / "data" / "mnist",
)
COLUMNS = ["train_loss", "test_loss", "val_acc", "test_acc", "lr"]


@dataclass(frozen=True)
class Data:
    """One split of a dataset: features and targets for train, validation and test."""

    name: str
    x: tuple[np.ndarray, np.ndarray, np.ndarray]
    y: tuple[np.ndarray, np.ndarray, np.ndarray]
    classes: int  # 0 for regression


@dataclass(frozen=True)
class Config:
    """Everything that defines one run; ``name`` spells it out."""

    dataset: str
    arch: str
    optimizer: str
    lr: float
    schedule: str
    noise: float
    batch: int
    epochs: int
    seed: int

    @property
    def name(self) -> str:
        return (
            f"{self.dataset}/{self.arch}/{self.optimizer}/lr{self.lr:g}/{self.schedule}/"
            f"noise{self.noise:g}/b{self.batch}/s{self.seed}"
        )


# -- data -------------------------------------------------------------------------------


def _load_raw(name: str, mnist_dir: Path) -> tuple[np.ndarray, np.ndarray, int]:
    from sklearn import datasets

    if name == "mnist":
        from earlystop._demo.idx import read_idx  # the demo's checked IDX reader

        x = read_idx(mnist_dir / "train-images-idx3-ubyte.gz", ndim=3, dtype="uint8")
        y = read_idx(mnist_dir / "train-labels-idx1-ubyte.gz", ndim=1, dtype="uint8")
        return x.reshape(len(x), -1).astype(np.float32) / 255.0, y.astype(np.int64), 10
    loaders: dict[str, Callable[..., Any]] = {
        "digits": datasets.load_digits,
        "breast_cancer": datasets.load_breast_cancer,
        "wine": datasets.load_wine,
        "diabetes": datasets.load_diabetes,
    }
    x, y = loaders[name](return_X_y=True)
    classes = 0 if name == "diabetes" else int(y.max()) + 1
    return np.asarray(x, np.float32), np.asarray(y), classes


_RAW_CACHE: dict[str, tuple[np.ndarray, np.ndarray, int]] = {}


def load_data(config: Config, mnist_dir: Path, subset: int) -> Data:
    """Split (and for classification corrupt) a dataset for one run's seed."""
    if config.dataset not in _RAW_CACHE:
        _RAW_CACHE[config.dataset] = _load_raw(config.dataset, mnist_dir)
    x_all, y_all, classes = _RAW_CACHE[config.dataset]
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(len(x_all))
    if config.dataset == "mnist":
        order = order[:subset]
    n = len(order)
    n_test, n_val = int(0.25 * n), int(0.2 * n)
    parts = (order[n_test + n_val :], order[n_test : n_test + n_val], order[:n_test])
    x = [x_all[p] for p in parts]
    y = [y_all[p].copy() for p in parts]
    if config.dataset != "mnist":  # standardize on the training split
        mean, std = x[0].mean(0), x[0].std(0)
        std[std < 1e-3] = 1.0  # constant features (digits' border pixels) stay as they are
        x = [(a - mean) / std for a in x]
    if classes == 0:
        mean, std = y[0].mean(), y[0].std()
        y = [((a - mean) / std).astype(np.float32) for a in y]
    else:
        for part in (0, 1):  # noisy train and validation labels; the test labels stay clean
            flip = rng.random(len(y[part])) < config.noise
            shift = rng.integers(1, classes, size=int(flip.sum()))
            y[part][flip] = (y[part][flip] + shift) % classes
    return Data(
        config.dataset,
        (x[0].astype(np.float32), x[1].astype(np.float32), x[2].astype(np.float32)),
        (y[0], y[1], y[2]),
        classes,
    )


# -- configurations ---------------------------------------------------------------------

DATASETS = {  # name: (share of runs, epoch budget, batch sizes)
    "digits": (0.26, 120, (32, 64, 128)),
    "breast_cancer": (0.16, 150, (16, 32, 64)),
    "wine": (0.12, 150, (8, 16, 32)),
    "diabetes": (0.16, 150, (16, 32, 64)),
    "mnist": (0.30, 50, (128, 256)),
}
ARCHS = ("linear", "mlp32", "mlp128", "mlp64x2", "mlp256drop")
LRS = {
    "sgd": (0.003, 0.01, 0.03, 0.1, 0.3),
    "adam": (0.0003, 0.001, 0.003, 0.01, 0.03),
    "adamw": (0.0003, 0.001, 0.003, 0.01),
    "rmsprop": (0.0003, 0.001, 0.003),
}
SCHEDULES = ("constant", "constant", "step", "plateau", "cosine")


def sample_configs(runs: int, seed: int, with_mnist: bool) -> list[Config]:
    """Draw ``runs`` configurations from the master ``seed``."""
    rng = np.random.default_rng(seed)
    names = [n for n in DATASETS if with_mnist or n != "mnist"]
    shares = np.array([DATASETS[n][0] for n in names])
    configs = []
    for index in range(runs):
        dataset = names[rng.choice(len(names), p=shares / shares.sum())]
        _, epochs, batches = DATASETS[dataset]
        optimizer = str(rng.choice(list(LRS)))
        diverge = rng.random() < 0.04
        schedule = "ramp" if diverge else str(rng.choice(SCHEDULES))
        noise = 0.0 if dataset == "diabetes" else float(rng.choice([0.0, 0.1, 0.2, 0.3]))
        configs.append(
            Config(
                dataset=dataset,
                arch=str(rng.choice(ARCHS)),
                optimizer=optimizer,
                lr=float(rng.choice(LRS[optimizer])),
                schedule=schedule,
                noise=noise,
                batch=int(rng.choice(batches)),
                epochs=epochs,
                seed=index,
            )
        )
    return configs


# -- training ---------------------------------------------------------------------------


def build_model(arch: str, inputs: int, outputs: int) -> Any:
    from torch import nn

    if arch == "linear":
        return nn.Linear(inputs, outputs)
    if arch.startswith("mlp256drop"):
        return nn.Sequential(
            nn.Linear(inputs, 256), nn.ReLU(), nn.Dropout(0.3), nn.Linear(256, outputs)
        )
    if arch == "mlp64x2":
        return nn.Sequential(
            nn.Linear(inputs, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, outputs)
        )
    width = int(arch[3:])
    return nn.Sequential(nn.Linear(inputs, width), nn.ReLU(), nn.Linear(width, outputs))


def build_optimizer(name: str, params: Any, lr: float) -> Any:
    import torch

    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    return torch.optim.RMSprop(params, lr=lr)


def train_run(config: Config, data: Data, record: Callable[..., None]) -> None:
    """Train ``config`` for its whole budget, calling ``record`` after every epoch."""
    import torch
    from torch import nn

    torch.manual_seed(config.seed)
    x = [torch.as_tensor(a) for a in data.x]
    y = [torch.as_tensor(a) for a in data.y]
    regression = data.classes == 0
    model = build_model(config.arch, x[0].shape[1], 1 if regression else data.classes)
    optimizer = build_optimizer(config.optimizer, model.parameters(), config.lr)
    loss_fn: Any = nn.MSELoss() if regression else nn.CrossEntropyLoss()
    scheduler: Any = None
    if config.schedule == "step":
        scheduler = torch.optim.lr_scheduler.MultiStepLR(
            optimizer, [config.epochs // 2, (3 * config.epochs) // 4], gamma=0.1
        )
    elif config.schedule == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.1, patience=8)
    elif config.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.epochs)
    elif config.schedule == "ramp":  # grows until the run diverges
        scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=1.12)

    def evaluate(part: int) -> tuple[float, float]:
        out = model(x[part])
        if regression:
            return float(loss_fn(out.squeeze(1), y[part])), math.nan
        loss = float(loss_fn(out, y[part]))
        return loss, float((out.argmax(1) == y[part]).float().mean())

    for epoch in range(1, config.epochs + 1):
        lr = optimizer.param_groups[0]["lr"]
        model.train()
        for batch in torch.split(torch.randperm(len(x[0])), config.batch):
            optimizer.zero_grad()
            out = model(x[0][batch])
            loss = loss_fn(out.squeeze(1) if regression else out, y[0][batch])
            if torch.isfinite(loss):
                loss.backward()
                optimizer.step()
        model.eval()
        with torch.no_grad():
            train_loss, _ = evaluate(0)
            val_loss, val_acc = evaluate(1)
            test_loss, test_acc = evaluate(2)
        record(
            config.name,
            epoch,
            val_loss,
            train_loss=train_loss,
            test_loss=test_loss,
            val_acc=val_acc,
            test_acc=test_acc,
            lr=lr,
        )
        step_scheduler(scheduler, val_loss)


def step_scheduler(scheduler: Any, val_loss: float) -> None:
    """Step a scheduler once per evaluation: ReduceLROnPlateau on the validation loss (a
    non-finite loss counts as no improvement), any other on its own, none at all."""
    import torch

    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(val_loss if math.isfinite(val_loss) else math.inf)
    elif scheduler is not None:
        scheduler.step()


def _train_rows(job: tuple[Config, str, int]) -> list[tuple[Any, ...]]:
    """Train one run in a worker process; returns its rows in order."""
    import torch

    torch.set_num_threads(1)
    config, mnist, subset = job
    rows: list[tuple[Any, ...]] = []
    train_run(
        config,
        load_data(config, Path(mnist), subset),
        lambda *args, **metrics: rows.append((*args, metrics)),
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=300, help="number of runs (default 300)")
    parser.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "curves" / "corpus.csv.gz"))
    parser.add_argument("--mnist", default=str(DEFAULT_MNIST), help="MNIST gzip IDX folder")
    parser.add_argument("--mnist-subset", type=int, default=4000, help="MNIST images used")
    parser.add_argument("--quick", action="store_true", help="3 tiny runs (smoke test)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    args = parser.parse_args(argv)

    import torch

    from earlystop import CurveRecorder

    torch.set_num_threads(1)
    mnist_dir = Path(args.mnist)
    with_mnist = (mnist_dir / "train-images-idx3-ubyte.gz").exists()
    if args.quick:
        configs = [
            Config("digits", "mlp32", "adam", 0.01, "plateau", 0.2, 64, 6, 0),
            Config("wine", "linear", "sgd", 0.03, "step", 0.1, 16, 6, 1),
            Config("diabetes", "mlp64x2", "adam", 0.003, "ramp", 0.0, 32, 6, 2),
        ]
    else:
        configs = sample_configs(args.runs, args.seed, with_mnist)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    jobs = [(config, str(mnist_dir), args.mnist_subset) for config in configs]
    pool = ProcessPoolExecutor(args.jobs) if args.jobs > 1 else None
    results = pool.map(_train_rows, jobs) if pool else map(_train_rows, jobs)
    with CurveRecorder(out, columns=COLUMNS) as recorder:
        # every run is seeded on its own, so the corpus does not depend on --jobs
        for number, (config, rows) in enumerate(zip(configs, results, strict=True), 1):
            for run, epoch, val_loss, metrics in rows:
                recorder.record(run, epoch, val_loss, **metrics)
            print(
                f"[{number}/{len(configs)}] {config.name} ({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
    if pool:
        pool.shutdown()
    meta = {
        "command": "python benchmarks/curves/generate.py " + " ".join(sys.argv[1:]),
        "runs": len(configs),
        "seed": args.seed,
        "quick": args.quick,
        "mnist": with_mnist,
        "mnist_subset": args.mnist_subset,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "seconds": round(time.perf_counter() - start, 1),
    }
    out.with_name(out.name.split(".")[0] + ".json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {len(configs)} runs to {out} in {meta['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
