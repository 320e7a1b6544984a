"""`engine ask QUESTION`: an answer from the whole corpus, streamed, with the sources it drew on."""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console
from rich.table import Table

from engine.answer.generation import Answer
from engine.api import open_store
from engine.errors import UsageError


def run(args: argparse.Namespace) -> int:
    if args.top_k < 1:
        raise UsageError(f"--top-k must be at least 1 (got {args.top_k})")
    with open_store(args.store, model=args.model, device=args.device) as store:
        answer = None
        for event in store.ask(args.question, top_k=args.top_k, lexical=not args.no_lexical):
            if isinstance(event, Answer):
                answer = event
            elif not args.json:
                sys.stdout.write(event.text)
                sys.stdout.flush()
    if args.json:
        print(json.dumps({"answer": answer.text, "grounded": answer.grounded,
                          "corpus_share": round(answer.corpus_share, 4), "citations": [citation.as_dict() for citation in answer.citations],
                          "timings": {name: round(seconds, 3) for name, seconds in answer.timings.items()}}))
        return 0
    sys.stdout.write("\n")
    console = Console()
    if not answer.grounded:
        console.print(f"[yellow]note: this answer drew little on your files ({answer.corpus_share:.0%} of its "
                      f"attention); it may come from the model alone.[/yellow]")
    if answer.citations:
        table = Table("source", "lines", "share", title="sources", title_justify="left")
        for citation in answer.citations:
            page = f"p. {citation.page}, " if citation.page else ""
            table.add_row(citation.path, f"{page}{citation.start_line}-{citation.end_line}", f"{citation.score:.0%}")
        console.print(table)
    return 0
