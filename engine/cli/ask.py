"""`engine ask QUESTION`: an answer from the whole corpus, streamed, with the sources it drew on."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import textwrap
from pathlib import Path

import platformdirs
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from engine.answer.found import unknown_said
from engine.answer.generation import Answer, Grounds, Token
from engine.api import TOP_K, open_store
from engine.errors import UsageError
from ingest import durable

log = logging.getLogger(__name__)
CLOSEST_WIDTH = 100  # characters of a closest passage's marked lines shown beside it


def run(args: argparse.Namespace) -> int:
    if args.top_k is not None and args.top_k < 1:
        raise UsageError(f"--top-k must be at least 1 (got {args.top_k})")
    previous = None
    if args.follow_up:
        previous = last_question(args.store)
        if previous is None:
            raise UsageError("--follow-up needs an earlier question to this store: ask one without it first")
    console = Console(highlight=False)
    with open_store(args.store, model=args.model, device=args.device) as store:
        answer = None
        top_k = TOP_K if args.top_k is None else args.top_k
        for event in store.ask(args.question, top_k=top_k, lexical=not args.no_lexical, previous=previous):
            if isinstance(event, Answer):
                answer = event
            elif isinstance(event, Grounds) and not event.found and not args.json:
                # said at once, as the chat does; no answer follows, only the closest passages
                parts = ("[bold yellow]Not found in your files.[/bold yellow]", escape(unknown_said(event.unknown)),
                         "The closest passages:")
                console.print(" ".join(part for part in parts if part))
            elif isinstance(event, Token) and not args.json:
                sys.stdout.write(event.text)
                sys.stdout.flush()
    remember_question(args.store, args.question)
    if args.json:
        print(json.dumps({"answer": answer.text, "found": answer.found, "unknown_names": answer.unknown,
                          "grounded": answer.grounded,
                          "evidence": [{key: value for key, value in evidence.as_dict().items() if key != "page"}
                                       for evidence in answer.evidence],
                          "unsupported": answer.unsupported,
                          "corpus_share": round(answer.corpus_share, 4),
                          "citations": [citation.as_dict() for citation in answer.citations],
                          "closest": [citation.as_dict() for citation in answer.closest],
                          "timings": {name: round(seconds, 3) for name, seconds in answer.timings.items()}}))
        return 0
    if not answer.found:
        for passage in answer.closest:  # each with the lines it marks, shortened: enough to judge where to look
            said = textwrap.shorten(passage.text, CLOSEST_WIDTH, placeholder=" \u2026")
            console.print(f"  {where(passage.path, passage.page, passage.start_line, passage.end_line)} "
                          f"\u201c{said}\u201d", markup=False, soft_wrap=True)
        return 0
    sys.stdout.write("\n")
    for evidence in answer.evidence:
        quoted = ("the answer above quotes it word for word" if evidence.quoted_in(answer.text)
                  else f"\u201c{' '.join(evidence.text.split())}\u201d")
        console.print(f"Evidence: {where(evidence.path, evidence.page, evidence.start_line, evidence.end_line)} — "
                      f"{quoted}", markup=False, soft_wrap=True)
    if answer.unsupported:
        console.print(f"[yellow]unsupported: {escape(', '.join(answer.unsupported))} (in no passage of your files)[/yellow]")
    if not answer.grounded:
        console.print(f"[yellow]note: this answer drew little on your files ({answer.corpus_share:.0%} of its "
                      f"attention); it may come from the model alone.[/yellow]")
    if not answer.citations:
        console.print("[yellow]sources: no passage read holds what this answer says; check it against the "
                      "evidence.[/yellow]")
        return 0
    table = Table("source", "lines", "share", title="sources", title_justify="left")
    for citation in answer.citations:
        page = f"p. {citation.page}, " if citation.page else ""
        table.add_row(escape(citation.path), f"{page}{citation.start_line}-{citation.end_line}", f"{citation.score:.0%}")
    console.print(table)
    return 0


def where(path: str, page: int | None, first: int, last: int) -> str:
    """'notes/wifi.md:3-5' / 'manual.pdf p. 2:7'."""
    lines = f"{first}" if first == last else f"{first}-{last}"
    return f"{path}{f' p. {page}' if page else ''}:{lines}"


def _questions_file() -> Path:
    """The last question asked of each store, for `--follow-up`: the user's own state, not the store's
    (asking never writes to a store, and another user asking the same store has their own)."""
    return platformdirs.user_state_path("wholecorpus") / "last-questions.json"


def _last_questions() -> dict[str, str]:
    try:
        questions = json.loads(_questions_file().read_text())
    except (OSError, ValueError):
        return {}
    return questions if isinstance(questions, dict) else {}


def last_question(store: Path) -> str | None:
    return _last_questions().get(str(Path(store).expanduser().resolve()))


def remember_question(store: Path, question: str) -> None:
    """Records `question` as the last one asked of `store`. A state folder that cannot be written costs only
    the next `--follow-up`, so it is logged, not raised: the answer was given."""
    questions = _last_questions() | {str(Path(store).expanduser().resolve()): question}
    target = _questions_file()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with durable.written(target) as partial:
            partial.write_text(json.dumps(questions))
    except OSError as error:
        log.warning("could not record the question for --follow-up: %s", error)
