"""Shared helpers of the replay benchmarks: replay many policies on a corpus, in parallel.

Each policy is replayed once per run; what is kept is the stop evaluation ``s`` of every
run, from which ``outcome_at`` derives every figure. The work is
split across processes (``--jobs``) because a corpus of a few hundred runs times a
hundred policies is a few million stopper steps.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from earlystop import Curve, read_curves
from earlystop._replay.replay import Outcome, outcome_at, stop_evaluation
from earlystop._replay.tune import load_policy

_CURVES: list[Curve] = []


def _init(path: str) -> None:
    _CURVES[:] = read_curves(path)


def _stops(spec: str) -> tuple[str, list[int] | str]:
    _, policy = load_policy(spec)
    try:
        return spec, [stop_evaluation(policy, curve) for curve in _CURVES]
    except ValueError as error:  # a policy that rejects a value of the corpus
        return spec, str(error)


def _stops_of(item: tuple[str, list[int]]) -> list[int | str]:
    """The stop of ``spec`` on the runs ``rows`` of the loaded corpus (or the error)."""
    spec, rows = item
    _, policy = load_policy(spec)
    values: list[int | str] = []
    for i in rows:
        try:
            values.append(stop_evaluation(policy, _CURVES[i]))
        except ValueError as error:
            values.append(str(error))
    return values


def replay_stops(
    path: str, specs: Sequence[str], jobs: int = 2, cache: str | None = None
) -> dict[str, list[int] | str]:
    """``{spec as given: [s for every run]}`` for every spec, runs in file order.

    A policy that raises on some run gets the error message instead of the list. With
    ``cache`` (a folder), the stop of every (run, spec) is kept in ``CACHE/stops.json``,
    keyed by a hash of the run's recorded values, so only new runs and new specs are
    replayed (a changed rule needs the cache folder deleted).
    """
    if cache is None:
        return _replay_stops(path, specs, jobs)
    curves = read_curves(path)
    keys = [_digest(curve) for curve in curves]
    store = Path(cache) / "stops.json"
    known: dict[str, dict[str, int | str]] = json.loads(store.read_text()) if store.exists() else {}
    missing = [
        (spec, [i for i, key in enumerate(keys) if spec not in known.get(key, {})])
        for spec in dict.fromkeys(specs)
    ]
    todo = [(spec, rows) for spec, rows in missing if rows]
    if todo:
        if jobs > 1 and len(todo) > 1:
            with ProcessPoolExecutor(jobs, initializer=_init, initargs=(path,)) as pool:
                done = list(pool.map(_stops_of, todo, chunksize=1))
        else:
            _CURVES[:] = curves
            done = [_stops_of(item) for item in todo]
        for (spec, rows), values in zip(todo, done, strict=True):
            for i, value in zip(rows, values, strict=True):
                known.setdefault(keys[i], {})[spec] = value
        store.parent.mkdir(parents=True, exist_ok=True)
        tmp = store.with_suffix(".tmp")
        tmp.write_text(json.dumps(known))
        tmp.replace(store)
    result: dict[str, list[int] | str] = {}
    for spec in specs:
        stops = [known[key][spec] for key in keys]
        errors = [s for s in stops if isinstance(s, str)]
        result[spec] = errors[0] if errors else [int(s) for s in stops]
    return result


def _digest(curve: Curve) -> str:
    payload = json.dumps([curve.run, curve.epochs, sorted(curve.columns.items())])
    return hashlib.sha1(payload.encode()).hexdigest()[:20]


def _replay_stops(path: str, specs: Sequence[str], jobs: int) -> dict[str, list[int] | str]:
    if jobs <= 1:
        _init(path)
        return dict(_stops(spec) for spec in specs)
    with ProcessPoolExecutor(jobs, initializer=_init, initargs=(path,)) as pool:
        return dict(pool.map(_stops, specs, chunksize=1))


def outcomes(curves: Sequence[Curve], stops: Sequence[int]) -> list[Outcome]:
    """The outcome of every run given its stop evaluation."""
    return [outcome_at(curve, stop) for curve, stop in zip(curves, stops, strict=True)]


def dataset_of(run: str) -> str:
    """The dataset part of a generated run name (``digits/mlp32/...`` -> ``digits``)."""
    return run.split("/", 1)[0]


def seed_of(run: str) -> int:
    """The seed of a generated run name (its last part, ``s17`` -> 17)."""
    last = run.rsplit("/", 1)[-1]
    return int(last[1:]) if last.startswith("s") and last[1:].isdigit() else -1


def fmt(value: float, scale: float = 100.0, digits: int = 2) -> str:
    return "-" if math.isnan(value) else f"{scale * value:.{digits}f}"
