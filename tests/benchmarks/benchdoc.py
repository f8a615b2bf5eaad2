"""docs/benchmarks.md, where every benchmark's ``--write`` puts its section."""

from __future__ import annotations

from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"


def write_section(begin: str, end: str, section: str) -> None:
    """Replace the text between ``begin`` and ``end`` in docs/benchmarks.md (or append)."""
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    DOC.write_text(text)
