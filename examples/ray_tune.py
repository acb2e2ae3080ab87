"""Ray Tune with earlystop's stopper: each trial stops by an earlystop policy.

Run with::

    python examples/ray_tune.py

Four trials of a stand-in training (scripted validation curves, one per learning rate)
run on a local 2-CPU Ray instance. Each trial stops when `patience=3` evaluations pass
without improvement; with `experiment_patience=2`, the whole experiment stops once two
trials in a row end without beating the best trial before them.
"""

from __future__ import annotations

import os
import tempfile

import ray
from ray import tune

from earlystop.integrations.ray import EarlyStoppingStopper


def curve(rate: float, epoch: int) -> float:
    """A validation loss that falls, then rises once the rate overfits (a stand-in)."""
    return (rate - 0.1) ** 2 + 1.0 / epoch + 0.02 * max(0, epoch - 10 * (1 - rate))


def trainable(config: dict[str, float]) -> None:
    for epoch in range(1, 40):
        tune.report({"val_loss": curve(config["rate"], epoch)})


def run_experiment(storage: str) -> tuple[EarlyStoppingStopper, tune.ResultGrid]:
    """Four trials, one at a time so that the order of their ends is fixed."""
    stopper = EarlyStoppingStopper("val_loss", patience=3, experiment_patience=2)
    tuner = tune.Tuner(
        trainable,
        param_space={"rate": tune.grid_search([0.1, 0.5, 0.7, 0.9])},
        tune_config=tune.TuneConfig(max_concurrent_trials=1),
        run_config=tune.RunConfig(stop=stopper, storage_path=storage, verbose=0),
    )
    return stopper, tuner.fit()


def report(stopper: EarlyStoppingStopper, grid: tune.ResultGrid) -> list[str]:
    lines = []
    for result in grid:
        decision = stopper.decisions[result.metrics["trial_id"]]
        lines.append(
            f"rate {result.config['rate']}: stopped after {decision.step} evaluations "
            f"({decision.reason}), best {decision.best_value:.4f} at evaluation "
            f"{decision.best_step}"
        )
    lines.append(f"{len(grid)} of 4 trials ran; experiment stopped early: {stopper.stop_all()}")
    return lines


def main() -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local, single-user instance
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        stopper, grid = run_experiment(tempfile.mkdtemp())
        print("\n".join(report(stopper, grid)))
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
