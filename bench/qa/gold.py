"""Which of the engine's blocks hold a question's gold lines: the one test the QA retrieval benches apply.

A block is gold when one of its excerpts (the store's file and whole lines the block covers) overlaps the
question's gold line range in its file.
"""

from __future__ import annotations

from pathlib import Path


def block_lines(runtime, store, block: int, block_tokens: int) -> list[tuple[str, int, int]]:
    """(file name, first line, last line) of each excerpt block `block` of `store` (an ingest Store) covers."""
    from engine.answer.excerpts import excerpts_for_blocks

    return [(Path(e.citation.paths[0]).name, e.line_start, e.line_start + sum(e.breaks))
            for e in excerpts_for_blocks(runtime, store, [(block, 0.0)], block_tokens, 10_000)]


def overlaps_gold(rows: list[tuple[str, int, int]], item: dict) -> bool:
    """Whether any of `rows` (as `block_lines` gives them) overlaps the item's gold lines."""
    return any(name == item["path"] and first <= item["end_line"] and last >= item["start_line"]
               for name, first, last in rows)
