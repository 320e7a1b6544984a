"""`engine ingest PATH...`: files, folders and repositories into the store, with progress and a summary.

The model's tokenizer is built from the model only when something must be read: loading it imports
torch (seconds), and a re-run over an unchanged corpus should take well under that. The store remembers
which model file (path, size, mtime) last proved its tokenizer fingerprint; any other model is loaded
and its fingerprint checked before anything is written.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from engine.errors import RunError, UsageError
from engine.memory.config import DEFAULT_MEMORY, load_config
from engine.model.files import resolve_model_path
from engine.store_check import check_store, forget_damaged_segments
from ingest import catalog
from ingest.catalog import StoreError
from ingest.pipeline import IngestOptions, RunSummary, ingest
from ingest.sources import WalkOptions
from ingest.store import Store
from ingest.tokens import SequenceTokenizer, sequence_tokenizer

SHOWN_PER_REASON = 5
QUIET_REASONS = {"empty", "binary"}  # expected in any repository: counted, not listed


def run(args: argparse.Namespace) -> int:
    placement = devices = None
    if args.devices or int(os.environ.get("WORLD_SIZE", "1")) > 1:  # imports torch: only for several devices
        from engine.parallel.devices import parse_devices, torchrun_placement

        placement = torchrun_placement(args.device)
        if args.devices and placement is not None:
            raise UsageError("--devices starts its own processes: under torchrun leave it out (each rank takes "
                             "cuda:LOCAL_RANK, or the CPU with --device cpu)")
        if args.devices and args.device:
            raise UsageError("give --device or --devices, not both")
        devices = parse_devices(args.devices) if args.devices else None
    if placement is not None and placement.rank != 0:
        return _serve(placement, args.model)
    for path in args.paths:
        if not path.exists() and not path.is_symlink():
            raise UsageError(f"path not found: {path}")
    if args.max_file_mb <= 0:
        raise UsageError(f"--max-file-mb must be positive (got {args.max_file_mb:g})")
    if args.batch_segments is not None and args.batch_segments < 1:
        raise UsageError(f"--batch-segments must be at least 1 (got {args.batch_segments})")
    model_path = resolve_model_path(args.model)
    options = IngestOptions(walk=WalkOptions(max_file_bytes=int(args.max_file_mb * 2**20),
                                             follow_outside=args.follow_outside, hidden=args.hidden,
                                             excludes=tuple(args.exclude)))
    console = Console(stderr=True)

    def tokenizer() -> SequenceTokenizer:
        from engine.model.weights import load_model_tokenizer  # imports torch: only when there is reading to do

        chat = load_model_tokenizer(model_path)
        return sequence_tokenizer(chat.backend, chat.fingerprint)

    try:
        with Store.open(args.store, write=True) as store:
            _repair(store, console)
            with _Display(console) as display:
                summary = ingest(store, args.paths, tokenizer, options, display, _model_key(model_path))
            if not args.json:
                _print_summary(Console(), summary, args.store)
            wanted = not args.no_process and bool(catalog.unprocessed_ranges(store.db))
            memory = _memory_setting(store, args.memory, console)
            processed = _on_devices(store, args.model, args.device, devices, placement, wanted, console,
                                    args.batch_segments, memory)
    except StoreError as error:
        raise UsageError(str(error)) from error
    if args.json:
        print(json.dumps(summary.as_dict() | {"processed": processed and asdict(processed)}))
    elif processed is not None:
        Console().print(f"engine: read {processed.tokens:,} new tokens in {processed.segments} segment(s), "
                        f"{processed.seconds:.1f} s ({processed.tokens_per_second:,.0f} tokens/s)")
        if len(processed.ranks) > 1:
            for load in processed.ranks:
                Console().print(f"  rank {load.rank} ({load.device}): {load.segments} segment(s), {load.tokens:,} "
                                f"tokens, {load.tokens_per_second:,.0f} tokens/s", highlight=False)
    return 0


def _repair(store: Store, console: Console) -> None:
    """Damaged state files are forgotten, so this run's pass of the model reads their segments again."""
    damage = check_store(store)
    if damage.segments:
        forget_damaged_segments(store, damage)
        console.print(f"engine ingest: repairing: {damage.line()}; the model reads those segments again",
                      highlight=False, soft_wrap=True)


def _memory_setting(store: Store, asked: str | None, console: Console) -> str:
    """The memory setting for this run: the one asked (or the default) for a new store; a store that has one
    keeps it, and asking for another says so in one line."""
    config = load_config(store.db)
    if config is None:
        return asked or DEFAULT_MEMORY
    kept = config.memory or "from before the settings"
    if asked is not None and asked != config.memory:
        console.print(f"engine ingest: this store keeps the memory it was first read with ({kept}); --memory {asked} "
                      "applies to a new store", highlight=False, soft_wrap=True)
    return config.memory or DEFAULT_MEMORY


def _on_devices(store: Store, model: str | None, device: str | None, devices: list[str] | None, placement,
                wanted: bool, console: Console, batch_segments: int | None, memory: str = DEFAULT_MEMORY):
    """The engine's pass on one device, on processes this one starts (--devices), or on torchrun's ranks."""
    if placement is None and not wanted:
        return None
    from engine.parallel.devices import Cluster  # imports torch: only when the model must read or ranks wait
    from engine.parallel.sharded import RankLost, release

    if placement is not None:  # under torchrun the other ranks wait for rank 0's word, work or not
        with Cluster.torchrun(placement) as cluster:
            if not wanted:
                release()
                return None
            try:
                return _process(store, model, placement.device, console, batch_segments, memory, across_ranks=True)
            except RankLost as lost:
                raise RunError(_stopped_message(cluster, lost)) from lost
    if devices is None or len(devices) == 1:
        return _process(store, model, devices[0] if devices else device, console, batch_segments, memory)
    with Cluster.spawn(devices, model) as cluster:
        try:
            return _process(store, model, devices[0], console, batch_segments, memory, across_ranks=True)
        except RankLost as lost:
            raise RunError(_stopped_message(cluster, lost)) from lost


def _stopped_message(cluster, lost) -> str:
    return (f"{cluster.who_stopped()} stopped mid-run: {lost.stored} of {lost.planned} segments are stored; "
            f"run the same command again to finish the rest")


def _serve(placement, model: str | None) -> int:
    """A torchrun rank other than 0: it never opens the store, it computes what rank 0 deals out."""
    from engine.parallel.devices import join, leave
    from engine.parallel.sharded import serve
    from engine.runtime import load_runtime

    join(placement)
    try:
        serve(placement, lambda: load_runtime(model, placement.device))
    finally:
        leave()
    return 0


def _process(store: Store, model: str | None, device: str | None, console: Console, batch_segments: int | None,
             memory: str = DEFAULT_MEMORY, across_ranks: bool = False):
    """The engine's pass over what is new: the model reads it and the segment states are written."""
    from engine.api import EngineStore  # imports torch: only when the model must read
    from engine.runtime import load_runtime

    engine_store = EngineStore(store, load_runtime(model, device))
    columns = (TextColumn("[bold]engine"), BarColumn(), TextColumn("{task.fields[counts]}"),
               TextColumn("{task.fields[rate]}"), TimeRemainingColumn())
    progress = Progress(*columns, console=console, disable=not console.is_terminal)
    task = progress.add_task("engine", total=None, counts="", rate="")
    started = time.perf_counter()

    def advance(done: int, total: int) -> None:
        rate = done / max(time.perf_counter() - started, 1e-6)
        progress.update(task, completed=done, total=total, counts=f"{done:,}/{total:,} tokens",
                        rate=f"{rate:,.0f} tok/s" if done else "")

    @contextmanager
    def indexing():
        progress.stop()  # one live display at a time: the bar is done when the index is built
        with console.status("[bold]engine[/] building the key index (once, when the store has grown large)"):
            yield

    with progress:
        return engine_store.read_new(advance, across_ranks, batch_segments, indexing(), memory)


def _model_key(model_path: Path) -> str:
    """The model file as it is now; a Hugging Face folder is keyed by its tokenizer.json."""
    tokenizer_file = model_path / "tokenizer.json"
    if not (model_path.is_dir() and tokenizer_file.exists()):
        tokenizer_file = model_path  # a GGUF file (or a folder the model loader will refuse with a reason)
    info = tokenizer_file.stat()
    return f"{tokenizer_file.resolve()}|{info.st_size}|{info.st_mtime_ns}"


class _Display:
    """The live progress line (files, tokens, tokens/s, ETA by bytes); silent when stderr is not a terminal."""

    def __init__(self, console: Console):
        self.progress = Progress(
            TextColumn("[bold]ingest"), BarColumn(), TextColumn("{task.fields[files]}/{task.fields[total_files]} files"),
            TextColumn("{task.fields[tokens]:,} tokens"), TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
            console=console, disable=not console.is_terminal)
        self.task = None
        self.files = self.tokens = 0
        self.started = time.perf_counter()

    def __enter__(self) -> _Display:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def start(self, files: int, total_bytes: int) -> None:
        self.started = time.perf_counter()
        self.task = self.progress.add_task("ingest", total=max(total_bytes, 1), files=0, total_files=files, tokens=0,
                                           rate="")

    def advance(self, files: int, done_bytes: int, tokens: int) -> None:
        self.files += files
        self.tokens += tokens
        seconds = max(time.perf_counter() - self.started, 1e-6)
        self.progress.update(self.task, advance=done_bytes, files=self.files, tokens=self.tokens,
                             rate=f"{self.tokens / seconds / 1000:,.0f}k tok/s")


def _print_summary(console: Console, summary: RunSummary, store: Path) -> None:
    table = Table(title=f"engine ingest → {store}", show_header=False, title_justify="left")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("added", f"{summary.added:,}")
    table.add_row("updated", f"{summary.updated:,}")
    partial = sum(status == "partial" for _, status, _, _ in summary.problems)
    if partial:
        table.add_row("  of which read with a caveat (partial)", f"{partial:,}")
    table.add_row("unchanged", f"{summary.unchanged:,}")
    table.add_row("removed", f"{summary.removed:,}")
    for code, count in sorted(summary.skipped.items(), key=lambda item: -item[1]):
        table.add_row(f"skipped: {code}", f"{count:,}")
    if summary.ignored:
        table.add_row("ignored (.gitignore, --exclude, hidden)", f"{summary.ignored:,}")
    rate = summary.tokens_added / summary.read_seconds if summary.read_seconds else 0
    table.add_row("tokens appended", f"{summary.tokens_added:,}")
    table.add_row("sequence length", f"{summary.sequence_tokens:,}")
    table.add_row("time", f"{summary.seconds:.2f} s" + (f" (reading {rate / 1000:,.0f}k tokens/s)" if rate else ""))
    console.print(table)
    shown: dict[str, int] = {}
    for name, status, code, reason in summary.problems:
        if code in QUIET_REASONS:
            continue
        if shown.get(code, 0) < SHOWN_PER_REASON:
            console.print(f"  [yellow]{status}[/yellow] {name}: {reason}", highlight=False)
        shown[code] = shown.get(code, 0) + 1
    hidden = sum(max(0, count - SHOWN_PER_REASON) for count in shown.values())
    if hidden:
        console.print(f"  … and {hidden} more (`engine status --json` lists every one)")
