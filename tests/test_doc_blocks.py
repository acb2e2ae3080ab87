"""Every ```python block of README.md and docs/*.md runs as pasted, and prints what it shows.

The convention (docs and README):

- a block fenced ```python runs in a fresh interpreter started in the repository root
  (here: a temporary folder whose entries link to the checkout's top-level files and
  folders, so that relative paths such as ``benchmarks/curves/corpus.csv.gz`` resolve and
  files the snippet writes stay out of the checkout), with this checkout's ``src`` first on
  ``PYTHONPATH``; it must exit with status 0 within ``TIMEOUT_S``;
- a block fenced ```python no-run is skipped; the sentence before it says why;
- a ```text block that follows a python block with nothing but blank lines in between is
  its expected standard output. The comparison is exact, line by line, after stripping
  trailing whitespace and trailing blank lines, with two escapes for what cannot be
  pinned (timings, addresses, paths): a line that is just ``...`` matches any number of
  lines, and ``...`` inside a line matches any text. Standard error is not compared
  (frameworks log there). A python block without such a text block must still run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import earlystop

ROOT = Path(__file__).resolve().parents[1]
SRC = Path(earlystop.__file__).resolve().parents[1]
TIMEOUT_S = 240
FENCE = re.compile(r"^```(\S*)(.*)$")


@dataclass(frozen=True)
class Block:
    file: Path
    line: int  # 1-based line of the opening fence
    info: str  # the fence's info string, e.g. "python" or "python no-run"
    code: str
    expected: str | None  # the text block right after it, if any

    @property
    def name(self) -> str:
        return f"{self.file.relative_to(ROOT)}:{self.line}"


def fenced_blocks(path: Path) -> list[tuple[int, str, str, int]]:
    """``(opening line, info, body, closing line)`` of every fenced block of ``path``."""
    blocks = []
    lines = path.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        found = FENCE.match(lines[index])
        if found is None:
            index += 1
            continue
        info = (found[1] + found[2]).strip()
        end = index + 1
        while end < len(lines) and lines[end].rstrip() != "```":
            end += 1
        blocks.append((index + 1, info, "\n".join(lines[index + 1 : end]) + "\n", end + 1))
        index = end + 1
    return blocks


def python_blocks(path: Path) -> list[Block]:
    """The python blocks of ``path``, each with the text block that follows it, if any."""
    fenced = fenced_blocks(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    found = []
    for position, (start, info, body, end) in enumerate(fenced):
        if info.split()[:1] != ["python"]:
            continue
        expected = None
        if position + 1 < len(fenced):
            next_start, next_info, next_body, _ = fenced[position + 1]
            between = lines[end : next_start - 1]
            if next_info == "text" and all(not line.strip() for line in between):
                expected = next_body
        found.append(Block(path, start, info, body, expected))
    return found


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


BLOCKS = [block for path in documents() for block in python_blocks(path)]


def matches(expected: str, actual: str) -> bool:
    """Line-by-line comparison with the ``...`` escapes of the module docstring."""

    def clean(text: str) -> list[str]:
        out = [line.rstrip() for line in text.splitlines()]
        while out and not out[-1]:
            out.pop()
        return out

    pattern = []
    for line in clean(expected):
        if line.strip() == "...":
            pattern.append(r"(?:.*\n)*?")
        else:
            pattern.append(".*".join(re.escape(part) for part in line.split("...")) + r"\n")
    return (
        re.fullmatch("".join(pattern), "".join(f"{line}\n" for line in clean(actual))) is not None
    )


@pytest.fixture(scope="module")
def root_view(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder that looks like the repository root; what snippets write stays in it."""
    view = tmp_path_factory.mktemp("root")
    for entry in ROOT.iterdir():
        if entry.name not in {".git", ".venv", "demo-out"}:
            (view / entry.name).symlink_to(entry)
    return view


@pytest.mark.parametrize(
    ("expected", "actual", "ok"),
    [
        ("a\nb\n", "a\nb\n\n", True),
        ("a\nb\n", "a\nc\n", False),
        ("stopped at ... s\n", "stopped at 0.25 s\n", True),
        ("first\n...\nlast\n", "first\nx\ny\nlast\n", True),
        ("first\n...\nlast\n", "first\nlast\n", True),
        ("first\nlast\n", "first\nextra\nlast\n", False),
        ("a\n", "", False),
    ],
)
def test_the_comparison(expected: str, actual: str, ok: bool) -> None:
    assert matches(expected, actual) is ok


def test_the_parser_pairs_text_blocks_and_skips_no_run(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "```python\nprint(1)\n```\n\n```text\n1\n```\n"
        "Prose.\n```python no-run\nimport nothing\n```\n"
        "```python\nprint(2)\n```\nIt prints:\n```text\n2\n```\n"
    )
    blocks = python_blocks(page)
    assert [(b.line, b.info, b.expected) for b in blocks] == [
        (1, "python", "1\n"),
        (9, "python no-run", None),
        (12, "python", None),  # prose in between: not its output
    ]


def test_there_are_blocks_to_check() -> None:
    assert len([b for b in BLOCKS if b.info == "python"]) >= 5


@pytest.mark.parametrize("block", BLOCKS, ids=[block.name for block in BLOCKS])
def test_block_runs_as_pasted(block: Block, root_view: Path, tmp_path: Path) -> None:
    if "no-run" in block.info.split():
        pytest.skip("fenced as python no-run")
    assert block.info == "python", f"unknown fence info {block.info!r} at {block.name}"
    script = tmp_path / "snippet.py"
    script.write_text(block.code, encoding="utf-8")
    env = {
        **os.environ,
        "PYTHONPATH": str(SRC),
        "MPLBACKEND": "Agg",
        "PYTHONHASHSEED": "0",
    }
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=root_view,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, f"{block.name} failed:\n{done.stderr[-3000:]}"
    if block.expected is not None:
        assert matches(block.expected, done.stdout), (
            f"{block.name} printed\n{done.stdout}\nbut the text block after it shows\n"
            f"{block.expected}"
        )
