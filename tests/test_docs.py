"""The documentation as a reader of the repository meets it: a short README for users that links to docs/,
and nothing that points outside the repository."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_is_short_and_has_no_figure_tables():
    assert len(README) < 8000
    figure = re.compile(r"\d\s*(%|s\b|ms\b|MB\b|GB\b|tokens/s|tok/s)")
    table_rows = [line for line in README.splitlines() if line.startswith("|")]
    assert not [row for row in table_rows if figure.search(row)]


def test_readme_links_resolve_inside_the_repository():
    links = re.findall(r"\]\(([^)#]+)\)", README)
    assert "docs/design.md" in links and "docs/benchmarks.md" in links
    for link in links:
        target = (ROOT / link).resolve()
        assert target.is_relative_to(ROOT) and target.exists(), link


def test_no_tracked_file_points_outside_the_repository():
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    outside = re.compile(r"\.\./shared|\bDESIGN\.md|\bFINDINGS\.md")
    this_file = Path(__file__).relative_to(ROOT).as_posix()
    pointing = [name for name in tracked.decode().split("\0")
                if name and name != this_file and Path(name).suffix in {".md", ".py", ".toml", ".json"}
                and (ROOT / name).is_file() and outside.search((ROOT / name).read_text(encoding="utf-8", errors="replace"))]
    assert pointing == []
