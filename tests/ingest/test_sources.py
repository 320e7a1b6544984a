"""The walk: a git repository made here, nested .gitignore files, links, caps and a stable order."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ingest.sources import WalkOptions, list_sources, normalize_roots

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is needed to check .gitignore semantics")


def write(root: Path, rel: str, text: str = "x\n") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def repo(tmp_path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    write(root, ".gitignore", "*.log\nbuild/\n!keep.log\n/secret.txt\n")
    for rel in ["a.md", "keep.log", "x.log", "secret.txt", "build/out.txt", "docs/build/x.md", "docs/guide.rst",
                "src/main.py", "src/secret.txt", "src/x.log", "src/generated/g.py", "src/a.tmp", "src/important.tmp",
                "src/deep/d.log", "src/deep/e.py", ".hidden/notes.md", "B.txt", "a-b/c.txt", "a/b.txt"]:
        write(root, rel, f"contents of {rel}\n")
    write(root, "src/.gitignore", "generated/\n*.tmp\n!important.tmp\n")
    write(root, "src/deep/.gitignore", "!*.log\n")
    (root / ".git" / "info").mkdir(exist_ok=True)
    (root / ".git" / "info" / "exclude").write_text("docs/guide.rst\n")
    return root


def git_listing(root: Path) -> set[str]:
    out = subprocess.run(["git", "-C", str(root), "ls-files", "--others", "--cached", "--exclude-standard"],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


def relative_names(listing, root: Path) -> list[str]:
    return [s.name.split("/", 1)[1] for s in listing.sources]


def test_gitignore_at_every_level_matches_git(repo):
    expected = git_listing(repo)
    assert "src/deep/d.log" in expected and "src/important.tmp" in expected and "x.log" not in expected
    listed = relative_names(list_sources(normalize_roots([repo]), WalkOptions(hidden=True)), repo)
    assert set(listed) == expected
    assert not any(name.startswith(".git/") for name in listed)


def test_hidden_paths_are_left_out_by_default_and_counted(repo):
    listing = list_sources(normalize_roots([repo]), WalkOptions())
    listed = set(relative_names(listing, repo))
    assert listed == {name for name in git_listing(repo) if not any(p.startswith(".") for p in name.split("/"))}
    assert listing.ignored > 0


def test_order_is_depth_first_by_name_and_stable(repo):
    first = relative_names(list_sources(normalize_roots([repo]), WalkOptions()), repo)
    assert first == sorted(first, key=lambda name: name.split("/"))
    assert first.index("a/b.txt") < first.index("a-b/c.txt")  # a folder's files stay together
    assert relative_names(list_sources(normalize_roots([repo]), WalkOptions()), repo) == first


def test_excludes_and_size_cap(repo):
    write(repo, "big.txt", "y" * 5000)
    listing = list_sources(normalize_roots([repo]), WalkOptions(excludes=("*.py", "docs/"), max_file_bytes=4096))
    names = relative_names(listing, repo)
    assert not any(name.endswith(".py") or name.startswith("docs/") for name in names)
    big = next(s for s in listing.sources if s.name.endswith("big.txt"))
    assert big.skip == "too-large" and "cap" in big.detail and big.size == 5000
    assert all(s.skip is None for s in listing.sources if s is not big)


def test_links_loops_and_special_files(repo, tmp_path):
    outside = write(tmp_path / "elsewhere", "far.txt", "far away\n")
    os.symlink("..", repo / "src" / "loop")
    os.symlink(outside, repo / "outside.txt")
    os.symlink(repo / "missing.txt", repo / "dangling.txt")
    os.symlink("a.md", repo / "alias.md")
    os.symlink("src", repo / "src-again")
    os.mkfifo(repo / "pipe.txt")
    os.symlink("self.txt", repo / "self.txt")
    listing = list_sources(normalize_roots([repo]), WalkOptions())
    by_name = {s.name.split("/", 1)[1]: s for s in listing.sources}
    assert by_name["src/loop"].skip == "link-loop" and "loop" in by_name["src/loop"].detail
    assert by_name["src-again"].skip == "link-loop" and "already" in by_name["src-again"].detail
    assert by_name["outside.txt"].skip == "outside-roots"
    assert by_name["dangling.txt"].skip == "broken-link"
    assert by_name["self.txt"].skip == "link-loop"
    assert by_name["pipe.txt"].skip == "not-regular"
    assert by_name["alias.md"].skip is None and by_name["alias.md"].path == str(repo / "alias.md")
    followed = list_sources(normalize_roots([repo]), WalkOptions(follow_outside=True))
    assert next(s for s in followed.sources if s.name.endswith("outside.txt")).skip is None


def test_roots_inside_other_roots_are_walked_once_and_files_can_be_roots(repo):
    roots = normalize_roots([repo / "src", repo, repo / "a.md"])
    assert roots == [str(repo)]
    single = list_sources(normalize_roots([repo / "a.md"]), WalkOptions())
    assert [(s.name, s.skip) for s in single.sources] == [("a.md", None)]
    with pytest.raises(FileNotFoundError):
        normalize_roots([repo / "nope"])
