"""The overhead benchmark's per-call rows for two versions of earlystop, side by side.

A loaded machine makes two separate runs of ``benchmarks/overhead.py`` incomparable. This
script imports a second copy of the package (another checkout's ``src``, copied under the
name ``earlystop_before``: its imports are relative) next to the current one, and times the
same calls of both interleaved in one process, round by round in a random order, with the
overhead benchmark's own timer (median of single calls) and models:

* a non-improving ``EarlyStopping`` call (µs), ``path=None``;
* an improving call kept in memory (``path=None``) and one written to disk (torch format,
  atomic and fsynced) (ms).

Usage::

    git archive BASE src | tar -x -C /tmp/base
    python benchmarks/overhead_versions.py --before /tmp/base/src [--models 1M] [--rounds 9]

torch runs on one intra-op thread unless ``--threads`` says otherwise: on a shared machine
a second thread makes the copies of an improving call many times slower and noisier.
"""

from __future__ import annotations

import argparse
import importlib
import random
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import FULL_MODELS, QUICK_MODELS, build, median_call_us

import earlystop


def load_before(src: Path, into: Path) -> Any:
    """The package under ``src`` imported as ``earlystop_before``."""
    shutil.copytree(src / "earlystop", into / "earlystop_before")
    sys.path.insert(0, str(into))
    return importlib.import_module("earlystop_before")


class Improving:
    """Calls that improve every time: the value goes down by one per call."""

    def __init__(self, early_stopping: Any, module: torch.nn.Module) -> None:
        self.early_stopping = early_stopping
        self.module = module
        self.value = 0.0

    def __call__(self) -> float:
        self.value -= 1.0
        self.early_stopping(self.value, self.module)
        return self.value


def cases(package: Any, module: torch.nn.Module, folder: Path) -> dict[str, Callable[[], Any]]:
    never = 10**9
    quiet = package.EarlyStopping(patience=never, path=None, trace_func=None)
    quiet(0.0, module)
    memory = package.EarlyStopping(patience=never, path=None, trace_func=None)
    disk = package.EarlyStopping(patience=never, path=folder / "best.pt", trace_func=None)
    return {
        "non-improving (µs)": lambda: quiet(1.0, module),
        "improving, in memory (ms)": Improving(memory, module),
        "improving, torch file (ms)": Improving(disk, module),
    }


def run(args: argparse.Namespace) -> list[tuple[str, str, float, float]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        before = load_before(Path(args.before), Path(tmp))
        models = QUICK_MODELS if args.quick else FULL_MODELS
        for name, width, depth in models:
            if args.models and name not in args.models.split(","):
                continue
            model = build(name, width, depth, "cpu")
            versions = {}
            for label, package in (("before", before), ("after", earlystop)):
                folder = Path(tmp) / label / name
                folder.mkdir(parents=True)
                versions[label] = cases(package, model.module, folder)
            samples: dict[tuple[str, str], list[float]] = {}
            for _ in range(args.rounds):
                order = [(label, case) for label in versions for case in versions[label]]
                random.shuffle(order)
                for label, case in order:
                    calls = args.calls if case.startswith("non") else args.improvements
                    scale = 1.0 if case.startswith("non") else 1e-3
                    call = versions[label][case]
                    samples.setdefault((label, case), []).append(
                        median_call_us(call, calls) * scale
                    )
            for case in versions["after"]:
                old = statistics.median(samples[("before", case)])
                new = statistics.median(samples[("after", case)])
                rows.append((name, case, old, new))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="the other version's src folder")
    parser.add_argument("--models", help="comma-separated subset of 1M,10M,100M (16k,100k quick)")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds (default 9)")
    parser.add_argument("--calls", type=int, default=20000, help="non-improving calls per round")
    parser.add_argument("--improvements", type=int, default=20, help="improving calls per round")
    parser.add_argument("--quick", action="store_true", help="tiny models (smoke test)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (default 1: steadier)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"{'model':<6} {'case':<28} {'before':>10} {'after':>10} {'after/before':>13}")
    for name, case, old, new in run(args):
        print(f"{name:<6} {case:<28} {old:>10.3f} {new:>10.3f} {new / old:>13.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
