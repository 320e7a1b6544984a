"""A cheap check that a store's files are whole, run when a store is used, and the repair of what can be.

What the catalog records must be on disk: `tokens.u32` at least as long as the committed sequence, and a
whole state file for every recorded segment. The check reads no keys: it stats each file and reads the
safetensors header (a few hundred bytes), whose tensors must end exactly at the end of the file and cover
the segment's tokens. Thousands of segments are checked in well under a second.

What can be rebuilt is rebuilt by the next `engine ingest`: a damaged state file is forgotten (its
`segments` row deleted), so the model reads that segment again from tokens.u32, exactly as it did the
first time. A tokens.u32 cut short is not rebuilt in place (the catalog records which texts it held,
not the text): it is named, with what to do.

No torch here: `engine status` uses it without loading the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engine.memory.states import state_path
from engine.safetensors_header import CutShort, read_header
from ingest import catalog
from ingest.sequence import TOKEN_BYTES
from ingest.store import Store

SHOWN_SEGMENTS = 3  # damaged state files named in the one line; --json lists every one


@dataclass
class StoreDamage:
    """What is damaged: tokens.u32 (a sentence, or None) and the recorded segments whose state file is not whole."""

    tokens: str | None = None
    segments: list[tuple[int, int, str]] = field(default_factory=list)  # (token_start, token_end, what is wrong)

    def __bool__(self) -> bool:
        return self.tokens is not None or bool(self.segments)

    def line(self) -> str:
        """One line naming what is damaged."""
        parts = []
        if self.tokens is not None:
            parts.append(self.tokens)
        if self.segments:
            named = ", ".join(f"states/{start:012d}.safetensors ({what})"
                              for start, _end, what in self.segments[:SHOWN_SEGMENTS])
            more = f" and {len(self.segments) - SHOWN_SEGMENTS} more" if len(self.segments) > SHOWN_SEGMENTS else ""
            parts.append(f"{len(self.segments)} state file(s) damaged: {named}{more}")
        return "; ".join(parts)

    def advice(self) -> str:
        """What to do about it, in words."""
        if self.tokens is not None:
            return ("tokens.u32 cannot be rebuilt in place: move the store away and run `engine ingest` on your "
                    "folders again")
        return "run `engine ingest` (any path already in the store) to re-read the damaged segments"

    def as_dict(self) -> dict:
        return {"tokens": self.tokens, "segments": [{"token_start": start, "token_end": end, "problem": what}
                                                    for start, end, what in self.segments]}


def check_store(store: Store, states: bool = True) -> StoreDamage:
    """The store's damage, if any: tokens.u32 shorter than the catalog's sequence, state files missing or not
    whole (with `states`: a reader whose index already holds the keys in memory needs only tokens.u32)."""
    damage = StoreDamage()
    committed = catalog.sequence_length(store.db)
    tokens = store.tokens_path
    on_disk = tokens.stat().st_size if tokens.exists() else None
    if on_disk is None and committed:
        damage.tokens = f"tokens.u32 is missing (the catalog records {committed:,} tokens)"
    elif on_disk is not None and on_disk < committed * TOKEN_BYTES:
        damage.tokens = (f"tokens.u32 is cut short: it holds {on_disk // TOKEN_BYTES:,} of the {committed:,} tokens "
                         f"the catalog records")
    if not states:
        return damage
    for start, end in catalog.segment_ranges(store.db).items():
        problem = state_file_problem(state_path(store.root, start), start, end)
        if problem is not None:
            damage.segments.append((start, end, problem))
    return damage


def state_file_problem(path: Path, start: int, end: int) -> str | None:
    """What is wrong with the state file of segment [start, end), or None when it is whole."""
    try:
        header, expected, size = read_header(path)
        rows = int(header["keys"]["shape"][0])
    except FileNotFoundError:
        return "missing"
    except CutShort:
        return "cut short"
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return "not a state file"
    if "range" not in header:  # a state file holds its segment's range beside the keys
        return "not a state file"
    if expected != size:
        return "cut short" if expected > size else "longer than its header says"
    if rows != end - start:
        return f"holds {rows} tokens, not {end - start}"
    return None


def forget_damaged_segments(store: Store, damage: StoreDamage) -> int:
    """Forgets the damaged segments, so the next pass of the model reads them again; returns how many.
    The state files are overwritten by that pass."""
    catalog.forget_segments(store.db, [start for start, _end, _what in damage.segments])
    return len(damage.segments)
