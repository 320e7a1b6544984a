"""Finding the files to read: the given roots walked in a stable order, honouring `.gitignore` at every level.

Rules, and why:
- Order is depth-first with the entries of each folder sorted by name, so two runs over the same tree
  list the same files in the same order and append them to the sequence in the same order.
- `.git/` is never entered. `.gitignore` files apply at every level as git applies them (a deeper file
  overrides a shallower one, the last matching line wins, `!` re-includes, nothing inside an ignored
  folder comes back); `.ignore` files work the same way for this tool alone (git does not read them);
  `.git/info/exclude` applies below them; `--exclude` patterns (gitignore syntax,
  relative to each root) override all of them. Hidden names (a leading dot) are left out unless asked:
  they are editor, tool and VCS state far more often than writing.
- Symbolic links are followed when their target lies inside one of the roots (or anywhere, when asked);
  a folder already walked is never walked again, so a link loop ends with a recorded reason.
- A file over the size cap, a broken link, a link loop, a FIFO or device, a folder that cannot be listed:
  each becomes a `Source` with `skip` set, so the run records why it was not read.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import pathspec

# .gitignore as git reads it; .ignore (ripgrep's convention) for what only this tool should leave out,
# such as a corpus folder's answer key, and it overrides .gitignore in the same folder.
IGNORE_FILES = (".gitignore", ".ignore")


@dataclass(frozen=True)
class Source:
    """One path the run considered: a file to read, or something it records as skipped without reading."""

    path: str  # absolute path as reached (links kept, not resolved): the document's identity in the catalog
    name: str  # the root's folder name + the relative path: what the model reads and what answers cite
    root: str  # the absolute root this path was reached from
    size: int = 0
    mtime_ns: int = 0
    skip: str | None = None  # reason code when the path is recorded without being read
    detail: str | None = None  # the human-readable reason beside the code
    is_dir: bool = False  # a folder that could not be walked (its stored files must not be tombstoned)


@dataclass(frozen=True)
class WalkOptions:
    max_file_bytes: int = 10 * 1024 * 1024
    follow_outside: bool = False
    hidden: bool = False
    excludes: tuple[str, ...] = ()
    leave_out: tuple[str, ...] = ()  # folders never walked, such as the store being written to


@dataclass
class Listing:
    sources: list[Source] = field(default_factory=list)
    ignored: int = 0  # paths left out by .gitignore, --exclude or for being hidden (not recorded one by one)


def normalize_roots(paths: list[Path]) -> list[str]:
    """Absolute roots in the order given, without duplicates or roots that lie inside another root."""
    roots: list[str] = []
    for path in paths:
        absolute = os.path.abspath(os.path.expanduser(path))
        if not os.path.lexists(absolute):
            raise FileNotFoundError(absolute)
        roots.append(absolute)
    real = [os.path.realpath(r) for r in roots]
    kept = []
    for i, root in enumerate(roots):
        nested = any(j != i and _inside(real[i], real[j]) and (real[i] != real[j] or j < i) for j in range(len(roots)))
        if not nested:
            kept.append(root)
    return kept


def list_sources(roots: list[str], options: WalkOptions) -> Listing:
    """Every file under `roots` (absolute, as `normalize_roots` returns them), in a stable order."""
    listing = Listing()
    real_roots = [os.path.realpath(r) for r in roots]
    excludes = pathspec.GitIgnoreSpec.from_lines(options.excludes) if options.excludes else None
    for root in roots:
        walker = _Walker(root, real_roots, options, excludes, listing)
        if os.path.isdir(root):
            walker.walk()
        else:
            walker.add_file()
    return listing


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


class _Walker:
    """One root's walk; an explicit stack keeps very deep trees from hitting Python's recursion limit."""

    def __init__(self, root: str, real_roots: list[str], options: WalkOptions,
                 excludes: pathspec.GitIgnoreSpec | None, listing: Listing):
        self.root, self.real_roots, self.options, self.excludes, self.listing = root, real_roots, options, excludes, listing
        self.label = os.path.basename(root.rstrip(os.sep)) or root
        self.visited: set[tuple[int, int]] = set()
        self.left_out = {(info.st_dev, info.st_ino) for info in map(_stat_or_none, options.leave_out) if info}

    def walk(self) -> None:
        # Each frame: (folder path, path relative to the root ("" for the root), ignore specs in force,
        # that folder's sorted entries, index of the next entry).
        top = os.stat(self.root)
        self.visited.add((top.st_dev, top.st_ino))
        root = self._frame(self.root, "", self._root_specs())
        stack = [root] if root else []
        while stack:
            folder, rel, specs, entries, index = stack[-1]
            if index >= len(entries):
                stack.pop()
                continue
            stack[-1] = (folder, rel, specs, entries, index + 1)
            child = self._visit(entries[index], rel, specs)
            if child is not None:
                stack.append(child)

    def _root_specs(self) -> list[tuple[str, pathspec.GitIgnoreSpec]]:
        exclude_file = os.path.join(self.root, ".git", "info", "exclude")
        specs = []
        if os.path.isfile(exclude_file):
            specs.append(("", _read_spec(exclude_file)))
        return specs

    def _frame(self, folder: str, rel: str, specs: list):
        """A stack frame for `folder`, or None after recording why it could not be listed."""
        try:
            with os.scandir(folder) as scan:
                entries = sorted(scan, key=lambda entry: entry.name)
        except OSError as error:
            self._skip_path(folder, rel, "unreadable", f"cannot list folder: {error.strerror or error}", is_dir=True)
            return None
        names = {entry.name for entry in entries}
        for ignore_name in IGNORE_FILES:  # later ones are checked first
            if ignore_name in names:
                specs = specs + [(rel, _read_spec(os.path.join(folder, ignore_name)))]
        return folder, rel, specs, entries, 0

    def _visit(self, entry: os.DirEntry, parent_rel: str, specs: list):
        rel = f"{parent_rel}/{entry.name}" if parent_rel else entry.name
        if entry.name == ".git":
            return None
        if entry.name.startswith(".") and not self.options.hidden:
            self.listing.ignored += 1
            return None
        try:
            is_link = entry.is_symlink()
            is_dir = entry.is_dir(follow_symlinks=False)
        except OSError as error:
            self._skip_path(entry.path, rel, "unreadable", str(error.strerror or error))
            return None
        if self._ignored(rel, is_dir and not is_link, specs):
            self.listing.ignored += 1
            return None
        if is_link:
            return self._follow_link(entry.path, rel, specs)
        if is_dir:
            info = entry.stat(follow_symlinks=False)
            if (info.st_dev, info.st_ino) in self.left_out:
                self.listing.ignored += 1
                return None
            self.visited.add((info.st_dev, info.st_ino))
            return self._frame(entry.path, rel, specs)
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError as error:
            self._skip_path(entry.path, rel, "vanished" if isinstance(error, FileNotFoundError) else "unreadable",
                            str(error.strerror or error))
            return None
        self._add(entry.path, rel, info)
        return None

    def _follow_link(self, path: str, rel: str, specs: list):
        try:
            info = os.stat(path)
        except FileNotFoundError:
            self._skip_path(path, rel, "broken-link", f"symbolic link to a missing target ({os.readlink(path)})")
            return None
        except OSError as error:
            self._skip_path(path, rel, "link-loop", f"symbolic link cannot be resolved: {error.strerror or error}")
            return None
        target = os.path.realpath(path)
        if not self.options.follow_outside and not any(_inside(target, r) for r in self.real_roots):
            self._skip_path(path, rel, "outside-roots",
                            f"symbolic link leads outside the given folders ({target}); --follow-outside follows it")
            return None
        if stat.S_ISDIR(info.st_mode):
            if self._ignored(rel, True, specs):
                self.listing.ignored += 1
                return None
            key = (info.st_dev, info.st_ino)
            if key in self.left_out:
                self.listing.ignored += 1
                return None
            if key in self.visited:
                loop = _inside(os.path.realpath(os.path.dirname(path)), target)
                self._skip_path(path, rel, "link-loop",
                                f"symbolic link loop back to {target}" if loop
                                else f"symbolic link to a folder read already ({target})")
                return None
            self.visited.add(key)
            return self._frame(path, rel, specs)
        self._add(path, rel, info)
        return None

    def _ignored(self, rel: str, is_dir: bool, specs: list) -> bool:
        probe = rel + "/" if is_dir else rel
        if self.excludes is not None and self.excludes.match_file(probe):
            return True
        for base, spec in reversed(specs):  # the deepest .gitignore decides first
            result = spec.check_file(probe[len(base) + 1:] if base else probe)
            if result.include is not None:
                return result.include
        return False

    def _add(self, path: str, rel: str, info: os.stat_result) -> None:
        name = self._name(rel)
        if not stat.S_ISREG(info.st_mode):
            self._skip_path(path, rel, "not-regular", "not a regular file (FIFO, socket or device)")
        elif info.st_size > self.options.max_file_bytes:
            self.listing.sources.append(Source(
                path, name, self.root, info.st_size, info.st_mtime_ns, "too-large",
                f"{info.st_size / 2**20:.1f} MB is over the {self.options.max_file_bytes / 2**20:g} MB cap "
                "(--max-file-mb raises it)"))
        else:
            self.listing.sources.append(Source(path, name, self.root, info.st_size, info.st_mtime_ns))

    def add_file(self) -> None:
        """A root that is a single file (or a link to one): its name is the file name alone."""
        try:
            info = os.stat(self.root)
        except OSError as error:
            code = "broken-link" if isinstance(error, FileNotFoundError) else "unreadable"
            self._skip_path(self.root, "", code, str(error.strerror or error))
            return
        self._add(self.root, "", info)

    def _name(self, rel: str) -> str:
        return f"{self.label}/{rel}" if rel else self.label

    def _skip_path(self, path: str, rel: str, code: str, detail: str, is_dir: bool = False) -> None:
        self.listing.sources.append(Source(path, self._name(rel), self.root, skip=code, detail=detail, is_dir=is_dir))


def _stat_or_none(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def _read_spec(path: str) -> pathspec.GitIgnoreSpec:
    with open(path, encoding="utf-8", errors="replace") as handle:
        return pathspec.GitIgnoreSpec.from_lines(handle.read().splitlines())
