"""The reliability suite's long mode: thousands of kills, faults, sequences and inputs.

It runs the same checks as ``tests/reliability`` (it imports their harnesses) with much
larger counts, and prints one table: what was tried, how often, how many broke a promise
(``lost``; must be 0) and how long it took. The exit status is 1 if anything was lost.

Usage::

    python benchmarks/reliability.py            # long mode (6-10 min on 2 shared cores)
    python benchmarks/reliability.py --quick    # seconds: the smoke test the suite runs
    python benchmarks/reliability.py --markdown # the table for docs/reliability.md
    python benchmarks/reliability.py --only kills,resume --kills 200

Run it from the repository root with ``PYTHONPATH=src`` (or the project's venv).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the suite's harnesses: tests/reliability/_*.py
if str(ROOT / "src") not in sys.path:
    sys.path.insert(1, str(ROOT / "src"))

SECTIONS = ["kills", "faults", "resume", "values", "options", "states", "files", "malicious"]


@dataclass
class Row:
    """One line of the table."""

    section: str
    what: str
    tried: int = 0
    lost: int = 0
    seconds: float = 0.0
    note: str = ""


@dataclass(frozen=True)
class Sizes:
    kills_per_case: int
    max_delay_ms: float
    faults: int
    stopper_sequences: int
    model_sequences: int
    mutated_states: int
    flip_stride: int
    random_flips: int


LONG = Sizes(500, 60.0, 400, 20_000, 1_000, 20_000, 1, 2_000)
QUICK = Sizes(3, 30.0, 4, 30, 3, 30, 50, 10)


@contextlib.contextmanager
def timed(row: Row) -> Iterator[Row]:
    began = time.perf_counter()
    try:
        yield row
    finally:
        row.seconds = time.perf_counter() - began


# -- 1. kills ---------------------------------------------------------------------------


def run_kills(sizes: Sizes, seed: int) -> list[Row]:
    from reliability._killer import FORMATS, WRITERS, ForkServer
    from reliability._killer import run_kills as kill_loop

    rows = []
    with ForkServer(ROOT / "src") as server:
        for writer_name, writer in WRITERS.items():
            for fmt, file_name in FORMATS.items():
                row = Row("kills", f"SIGKILL while checkpointing: {fmt}, {writer_name}")
                with timed(row), tempfile.TemporaryDirectory() as directory:
                    try:
                        tally = kill_loop(
                            server,
                            Path(directory),
                            kills=sizes.kills_per_case,
                            file_name=file_name,
                            writer=writer,
                            max_delay_ms=sizes.max_delay_ms,
                            seed=seed,
                        )
                    except AssertionError as exc:
                        row.lost, row.note = 1, str(exc)[:200]
                    else:
                        row.tried, row.lost = tally.kills, tally.lost
                        row.note = (
                            f"{tally.killed_mid_save} mid-save, {tally.saves_completed} "
                            f"improvements returned, {tally.strays_cleaned} strays cleaned"
                        )
                rows.append(row)
    return rows


# -- 2. disk faults ----------------------------------------------------------------------


def run_faults(sizes: Sizes, seed: int) -> list[Row]:
    import pytest

    from reliability import test_disk_faults as faults

    rows = []
    row = Row("faults", "every injected fault x format x foreground/background")
    with timed(row):
        for fault in faults.FAULTS:
            for fmt in faults.FILES:
                for background in [False, True]:
                    row.tried += 1
                    with (
                        tempfile.TemporaryDirectory() as directory,
                        pytest.MonkeyPatch.context() as mp,
                    ):
                        try:
                            faults.test_fault_keeps_previous_checkpoint_and_training_goes_on(
                                Path(directory), mp, fault, fmt, background
                            )
                        except Exception as exc:
                            row.lost += 1
                            row.note = f"{fault} {fmt} background={background}: {exc}"[:200]
    rows.append(row)
    row = Row("faults", "ENOSPC after a random number of bytes, both formats")
    rng = random.Random(seed)
    with timed(row):
        for trial in range(sizes.faults):
            row.tried += 1
            fmt = "torch" if trial % 2 else "safetensors"
            with tempfile.TemporaryDirectory() as directory, pytest.MonkeyPatch.context() as mp:
                try:
                    _random_enospc(Path(directory), mp, fmt, rng, faults)
                except Exception as exc:
                    row.lost += 1
                    row.note = f"trial {trial} {fmt}: {exc}"[:200]
    rows.append(row)
    return rows


def _random_enospc(directory: Path, mp: Any, fmt: str, rng: random.Random, faults: Any) -> None:
    import safetensors.torch

    from earlystop import CheckpointError, EarlyStopping
    from earlystop._weights import checkpoint as _checkpoint

    path = directory / faults.FILES[fmt]
    stopper = EarlyStopping(patience=3, path=path, trace_func=None)
    stopper(1.0, faults.sentinel_model(1))
    before = path.read_bytes()
    budget = rng.randrange(0, len(before) + 64)
    if fmt == "torch":
        real_open = open

        def full_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            return faults.PartialWriter(real_open(file, mode, *args, **kwargs), budget)

        mp.setattr(_checkpoint, "open", full_open, raising=False)
    else:
        real_save = safetensors.torch.save_file

        def full_save(tensors: Any, filename: str, metadata: Any = None) -> None:
            real_save(tensors, filename, metadata=metadata)
            data = Path(filename).read_bytes()
            if budget < len(data):
                Path(filename).write_bytes(data[:budget])
                raise OSError(errno.ENOSPC, "No space left on device")

        mp.setattr(safetensors.torch, "save_file", full_save)
    try:
        stopper(0.5, faults.sentinel_model(2))
    except CheckpointError as exc:  # budget beyond the file size: the save succeeds
        if str(path) not in str(exc) or "No space left on device" not in str(exc):
            raise AssertionError(f"the error names neither the path nor the cause: {exc}") from exc
        if path.read_bytes() != before:
            raise AssertionError("the previous checkpoint changed") from exc
    mp.undo()
    assert not faults.stray_temporaries(path), "a temporary file was left"
    restored = faults.sentinel_model(0)
    stopper.restore(restored)
    assert faults.held_index(restored) == 2.0, "restore did not give the best weights"
    assert stopper(0.1, faults.sentinel_model(3)).improved
    assert faults.held_index(faults._load(path)) == 3.0


# -- 3. resume equivalence ---------------------------------------------------------------


def run_resume(sizes: Sizes, seed: int) -> list[Row]:
    from reliability._resume import check_model_resume, check_stopper_resume, model_runs, runs

    return [
        _property_row(
            Row("resume", "Stopper: sequences x split points x options, through JSON"),
            runs(),
            lambda run: check_stopper_resume(*run),
            sizes.stopper_sequences,
        ),
        _property_row(
            Row("resume", "EarlyStopping + model: resumed from JSON or checkpoint files"),
            model_runs(),
            lambda run: check_model_resume(*run),
            sizes.model_sequences,
        ),
    ]


def _property_row(row: Row, strategy: Any, check: Callable[[Any], None], examples: int) -> Row:
    """Run ``check`` on ``examples`` draws of ``strategy``; a failure (shrunk) is one lost."""
    from hypothesis import HealthCheck, given, settings

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def property_(drawn: Any) -> None:
        row.tried += 1
        check(drawn)

    with timed(row):
        try:
            property_()
        except AssertionError as exc:
            row.lost, row.note = 1, str(exc)[:200]
    return row


# -- 4. hostile values, options, states --------------------------------------------------


def run_values(sizes: Sizes, seed: int) -> list[Row]:
    from reliability import test_hostile as hostile

    rows = []
    for label, test in [
        (
            "monitored values x 4 entry points",
            hostile.test_every_hostile_monitored_value_at_every_entry_point,
        ),
        (
            "accepted values decide as their float (min)",
            lambda: hostile.test_accepted_values_decide_as_their_float("min"),
        ),
        (
            "accepted values decide as their float (max)",
            lambda: hostile.test_accepted_values_decide_as_their_float("max"),
        ),
    ]:
        row = Row("values", label, tried=len(hostile.VALUES) * (4 if "entry" in label else 3))
        with timed(row):
            try:
                test()
            except AssertionError as exc:
                row.lost, row.note = 1, str(exc)[:200]
        rows.append(row)
    return rows


def run_options(sizes: Sizes, seed: int) -> list[Row]:
    from reliability import test_hostile as hostile
    from reliability._hostile import EARLY_STOPPING_OPTIONS, STOPPER_OPTIONS, option_values

    per_option = len(option_values())
    rows = []
    for label, options, test in [
        (
            "Stopper options",
            STOPPER_OPTIONS,
            hostile.test_stopper_option_accepts_exactly_the_documented_values,
        ),
        (
            "EarlyStopping options",
            EARLY_STOPPING_OPTIONS,
            hostile.test_early_stopping_option_accepts_exactly_the_documented_values,
        ),
    ]:
        row = Row("options", f"{label} x every hostile value")
        with timed(row):
            for option in options:
                row.tried += per_option
                try:
                    test(option)
                except AssertionError as exc:
                    row.lost += 1
                    row.note = str(exc)[:200]
        rows.append(row)
    return rows


def run_states(sizes: Sizes, seed: int) -> list[Row]:
    from reliability import test_hostile as hostile

    row = Row("states", "load_state_dict with a mutated state (any depth)")
    return [
        _property_row(
            row, hostile.mutated_states(), hostile.check_mutated_state, sizes.mutated_states
        )
    ]


# -- 5. files ----------------------------------------------------------------------------


def run_files(sizes: Sizes, seed: int) -> list[Row]:
    from reliability._corrupt import corruption_trials, damaged_variants, reference_checkpoints

    rows = []
    with tempfile.TemporaryDirectory() as directory:
        references = reference_checkpoints(Path(directory))
        scratch = Path(directory) / "scratch"
        scratch.mkdir()
        for name, reference in references.items():
            row = Row("files", f"damaged {name}: every flip/truncation + random damage")
            with timed(row):
                data = reference.read_bytes()
                variants = damaged_variants(
                    data, stride=sizes.flip_stride, random_flips=sizes.random_flips, seed=seed
                )
                counts, failures = corruption_trials(reference, variants, scratch)
            row.tried = sum(counts.values()) + len(failures)
            row.lost = len(failures)
            row.note = (
                failures[0][:200]
                if failures
                else (
                    f"{counts['refused']} refused, {counts['intact']} harmless (loaded identical)"
                )
            )
            rows.append(row)
    return rows


def run_malicious(sizes: Sizes, seed: int) -> list[Row]:
    from reliability import test_hostile_files as files

    rows = []
    from reliability._corrupt import malicious_files, wrong_format_files

    rows = []
    cases: list[tuple[str, Callable[[Path], None], Callable[[Path], dict[str, Path]]]] = [
        (
            "malicious pickles: load_checkpoint and restore refuse, no code runs",
            files.test_malicious_pickles_never_run,
            lambda d: malicious_files(d, d / "sentinel"),
        ),
        (
            "wrong-format files refused with the path",
            files.test_wrong_format_files_are_refused_with_the_path,
            wrong_format_files,
        ),
    ]
    for label, test, catalogue in cases:
        row = Row("malicious", label)
        with timed(row), tempfile.TemporaryDirectory() as directory:
            count_dir, test_dir = Path(directory) / "count", Path(directory) / "test"
            count_dir.mkdir()
            test_dir.mkdir()
            row.tried = len(catalogue(count_dir))
            try:
                test(test_dir)
            except AssertionError as exc:
                row.lost, row.note = 1, str(exc)[:200]
        rows.append(row)
    return rows


RUNNERS: dict[str, Callable[[Sizes, int], list[Row]]] = {
    "kills": run_kills,
    "faults": run_faults,
    "resume": run_resume,
    "values": run_values,
    "options": run_options,
    "states": run_states,
    "files": run_files,
    "malicious": run_malicious,
}


def render(rows: list[Row], markdown: bool) -> str:
    header = ["section", "what", "tried", "lost", "seconds"]
    body = [[r.section, r.what, str(r.tried), str(r.lost), f"{r.seconds:.1f}"] for r in rows]
    total_tried = sum(r.tried for r in rows)
    total_lost = sum(r.lost for r in rows)
    total_time = sum(r.seconds for r in rows)
    body.append(["total", "", str(total_tried), str(total_lost), f"{total_time:.1f}"])
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in [header, *body]
    ]
    notes = [f"- {r.section} / {r.what}: {r.note}" for r in rows if r.note]
    return "\n".join([*lines, "", *notes])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts (smoke test)")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    parser.add_argument("--kills", type=int, help="kills per format x writer")
    parser.add_argument("--sequences", type=int, help="Stopper resume sequences")
    parser.add_argument("--seed", type=int, default=20261124)
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else LONG
    if args.kills is not None:
        sizes = Sizes(**{**sizes.__dict__, "kills_per_case": args.kills})
    if args.sequences is not None:
        sizes = Sizes(**{**sizes.__dict__, "stopper_sequences": args.sequences})
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {SECTIONS}")
    rows: list[Row] = []
    for name in chosen:
        rows.extend(RUNNERS[name](sizes, args.seed))
        print(f"[{name} done: {sum(r.tried for r in rows)} tried so far]", file=sys.stderr)
    print(render(rows, args.markdown))
    if args.json is not None:
        args.json.write_text(json.dumps([r.__dict__ for r in rows], indent=2))
    return 1 if any(r.lost for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
