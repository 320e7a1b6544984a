"""`engine status [--json]`: what the store holds and the engine settings it was read with, from the catalog
and the files alone (no model is loaded, torch is not imported)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from engine.errors import UsageError
from engine.memory.config import load_config
from engine.memory.states import recorded_state_bytes
from engine.store_check import check_store
from ingest.catalog import StoreError, status_report
from ingest.store import Store, writer_active

SHOWN_PER_REASON = 5


def run(args: argparse.Namespace) -> int:
    try:
        with Store.open(args.store) as store:
            report = status_report(store.db)
            _mark_interrupted(report, store.root)
            report["store"] = str(Path(args.store).resolve())
            report["size_on_disk"] = store.sizes()
            damage = check_store(store)
            report["damage"] = damage.as_dict() if damage else None
            report["engine"] = _engine(store, report["size_on_disk"]["index"])
    except StoreError as error:
        raise UsageError(str(error)) from error
    if args.json:
        print(json.dumps(report))
    else:
        _print(Console(), report)
        if report["damage"] is not None:
            print(f"engine status: the store is damaged: {damage.line()}; {damage.advice()}", file=sys.stderr)
    return 0


def _mark_interrupted(report: dict, root: Path) -> None:
    """A last run still recorded as `running` with no process holding the store's lock was killed mid-way:
    shown as `interrupted` (the next ingest records it so, and resumes from what it committed)."""
    run = report["last_run"]
    if run is not None and run["status"] == "running" and not writer_active(root):
        run["status"] = "interrupted"


def _engine(store: Store, index_bytes: int) -> dict | None:
    """The settings the store's tokens were read with, and what the states weigh per token read.

    Bytes per token is measured from the recorded state files (their sizes over the tokens they cover),
    so it includes each file's header and is the figure a user's disk actually pays.
    """
    config = load_config(store.db)
    if config is None:
        return None
    segments, tokens, state_bytes = recorded_state_bytes(store)
    return {
        "model_digest": config.model_digest[:12],
        "memory": config.memory or None,
        "retrieval_heads": [list(head) for head in config.heads],
        "segment_tokens": config.segment_tokens,
        "block_tokens": config.block_tokens,
        "patterns": [{"segment_length": length, "dilation_rate": rate}
                     for length, rate in zip(config.segment_lengths, config.dilation_rates)],
        "rope_mode": config.rope_mode,
        "format": config.format,
        "processed_tokens": tokens,
        "processed_segments": segments,
        "state_bytes": state_bytes,
        "index_bytes": index_bytes,
        "bytes_per_token": state_bytes / tokens if tokens else None,
    }


def _print(console: Console, report: dict) -> None:
    console.print(f"[bold]store[/bold] {report['store']}  (format {report['format_version']}, tokenizer "
                  f"{report['tokenizer_fingerprint'] or 'not yet bound'}, created {report['created_at']})",
                  highlight=False)
    documents = Table(title="documents", title_justify="left")
    statuses = ["ok", "partial", "skipped", "removed"]
    documents.add_column("kind")
    for status in statuses:
        documents.add_column(status, justify="right")
    for kind, counts in sorted(report["documents"].items()):
        documents.add_row(kind, *(f"{counts.get(status, 0):,}" for status in statuses))
    console.print(documents)
    tokens, spans, backlog, sizes = report["tokens"], report["spans"], report["unprocessed"], report["size_on_disk"]
    figures = Table(show_header=False)
    figures.add_column("what")
    figures.add_column("value", justify="right")
    figures.add_row("tokens in the sequence", f"{tokens['sequence']:,}")
    figures.add_row("  live / tombstoned", f"{tokens['live']:,} / {tokens['tombstoned']:,}")
    figures.add_row("spans live / total", f"{spans['live']:,} / {spans['total']:,}")
    figures.add_row("not processed by the engine yet",
                    f"{backlog['tokens']:,} tokens in {backlog['ranges']:,} range(s)")
    figures.add_row("size on disk", f"{sizes['total'] / 2**20:,.1f} MB (catalog {sizes['catalog'] / 2**20:,.1f}, "
                                    f"tokens {sizes['tokens'] / 2**20:,.1f}, states {sizes['states'] / 2**20:,.1f}, "
                                    f"index {sizes['index'] / 2**20:,.1f})")
    engine = report["engine"]
    if engine is None:
        figures.add_row("engine", "not run on this store yet")
    else:
        heads = ", ".join(f"layer {layer} head {head}" for layer, head in engine["retrieval_heads"])
        patterns = " + ".join(f"({p['segment_length']:,}, r={p['dilation_rate']})" for p in engine["patterns"])
        per_token = "—" if engine["bytes_per_token"] is None else f"{engine['bytes_per_token']:,.1f}"
        figures.add_row("engine model digest", engine["model_digest"])
        figures.add_row("memory", engine["memory"] or "from before the settings (one head)")
        figures.add_row("retrieval heads", heads)
        figures.add_row("segment / block tokens", f"{engine['segment_tokens']:,} / {engine['block_tokens']:,}")
        figures.add_row("attention patterns (window, dilation)", f"{patterns}, RoPE {engine['rope_mode']}")
        figures.add_row("processed by the engine",
                        f"{engine['processed_tokens']:,} tokens in {engine['processed_segments']:,} segment(s)")
        index = (f"{engine['index_bytes'] / 2**20:,.1f} MB" if engine["index_bytes"]
                 else "none (built in memory when the store is opened)")
        figures.add_row("states / index on disk", f"{engine['state_bytes'] / 2**20:,.1f} MB / {index}")
        figures.add_row("state bytes per token", per_token)
    for processing in report["processing"][:1]:  # the latest pass; --json has the last few
        ranks = Table(title=f"engine pass of {processing['started_at']}", title_justify="left")
        for name in ("rank", "host", "device", "segments", "tokens", "tokens/s", "first–last token"):
            ranks.add_column(name, justify="right" if name in ("segments", "tokens", "tokens/s") else "left")
        for load in processing["ranks"]:
            ranks.add_row(f"{load['rank']}/{load['world_size']}", load["host"], load["device"], f"{load['segments']:,}",
                          f"{load['tokens']:,}", f"{load['tokens_per_second']:,.0f}",
                          f"{load['first_token']:,}–{load['last_token']:,}")
        console.print(ranks)
    run = report["last_run"]
    if run:
        figures.add_row("last run", f"#{run['id']} {run['status']}, {run['started_at']}")
    console.print(figures)
    shown: dict[str, int] = {}
    for problem in report["problems"]:
        code = problem["reason_code"] or "other"
        shown[code] = shown.get(code, 0) + 1
        if shown[code] <= SHOWN_PER_REASON:
            console.print(f"  [yellow]{problem['status']}[/yellow] {problem['name']}: {problem['reason']}",
                          highlight=False)
    for code, count in shown.items():
        if count > SHOWN_PER_REASON:
            console.print(f"  … {count - SHOWN_PER_REASON} more {code} (--json lists every one)")
