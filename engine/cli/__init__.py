"""The `engine` command: one entry point for the whole product.

Each subcommand lives in its own module under `engine/cli/`; this file only parses arguments,
turns known failures into one clear line with exit code 2, and dispatches.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path

from engine.errors import RunError, UsageError
from engine.memory.config import DEFAULT_MEMORY, MEMORY_SETTINGS
from engine.model.files import ModelError
from engine.store import default_store

EXIT_USAGE = 2
EXIT_STOPPED = 1  # a run that stopped part way; the same command resumes it


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--store", type=Path, default=argparse.SUPPRESS,
                        help="the corpus store (default: $ENGINE_STORE or one personal store in the user data dir)")
    common.add_argument("--model", default=argparse.SUPPRESS,
                        help="a Llama-family GGUF file or Hugging Face folder (default: $ENGINE_MODEL or the "
                             "embedded SmolLM2-135M-Instruct)")
    common.add_argument("--device", default=argparse.SUPPRESS, help="cpu, cuda or cuda:N (default: cuda if present)")
    common.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="also show what the engine does behind the scenes (model extraction, calibration, "
                             "index training)")

    parser = argparse.ArgumentParser(prog="engine", parents=[common],
                                     description="Ask questions of your whole corpus, read by one language model.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    generate = sub.add_parser("generate", parents=[common], help="talk to the model directly (no corpus)")
    generate.add_argument("prompt")
    generate.add_argument("--max-new-tokens", type=int, default=256)
    generate.add_argument("--system", default=None, help="a system message for the chat template")
    generate.add_argument("--json", action="store_true", help="print one JSON object instead of streaming")

    ingest = sub.add_parser("ingest", parents=[common], help="add files, folders or repositories to the store")
    ingest.add_argument("paths", nargs="+", type=Path)
    ingest.add_argument("--max-file-mb", type=float, default=10.0,
                        help="files larger than this are skipped, with the reason recorded (default: 10)")
    ingest.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                        help="leave out paths matching this .gitignore-style pattern (repeatable)")
    ingest.add_argument("--hidden", action="store_true", help="also read hidden files and folders (.name)")
    ingest.add_argument("--follow-outside", action="store_true",
                        help="follow symbolic links that lead outside the given paths")
    ingest.add_argument("--json", action="store_true", help="print the run's summary as one JSON object")
    ingest.add_argument("--devices", default=None, metavar="LIST",
                        help="read with one process per device, e.g. cpu,cpu or cuda:0,cuda:1 (under torchrun "
                             "leave it out: each rank takes cuda:LOCAL_RANK)")
    ingest.add_argument("--batch-segments", type=int, default=None, metavar="N",
                        help="segments the model reads in one forward pass, on each device (default: 32 on a GPU, "
                             "4 on the CPU); the stored keys are the same whatever N")
    ingest.add_argument("--memory", choices=MEMORY_SETTINGS, default=None,
                        help=f"what the model keeps of a new store (default {DEFAULT_MEMORY}): fast reads a few layers and "
                             "keeps 2 heads (128 B a token); best reads deeper and keeps 4 (256 B a token). A store "
                             "keeps the setting it was first read with")
    ingest.add_argument("--no-process", action="store_true",
                        help="only add the files to the catalog; the model reads them at the next ingest")

    ask = sub.add_parser("ask", parents=[common], help="ask a question of the whole corpus")
    ask.add_argument("question")
    ask.add_argument("--json", action="store_true", help="print one JSON object: answer, citations, timings")
    ask.add_argument("--top-k", type=int, default=None,
                     help="how many blocks of 64 tokens to retrieve (default 6: full-text search and the model's "
                          "memory take turns)")
    ask.add_argument("--no-lexical", action="store_true", help="retrieve with the model's heads only")
    ask.add_argument("--follow-up", action="store_true",
                     help="the question follows the last one asked of this store (\"and when was that?\"): "
                          "its words join the search")

    # The chat's own options (--host, --port, --auth, ...) belong to the app, which parses them: they are
    # passed on as given, and `engine chat --help` shows the app's help.
    sub.add_parser("chat", parents=[common], add_help=False,
                   help="start the web chat (its options: engine chat --help)")

    selftest = sub.add_parser("selftest", parents=[common], help="prove the memory works")
    selftest.add_argument("test", choices=["passkey"])
    selftest.add_argument("--lengths", default="4k", help="haystack lengths, e.g. 4k,32k,256k,1M (default 4k)")
    selftest.add_argument("--trials", type=int, default=5, help="trials per length (default 5)")
    selftest.add_argument("--seed", type=int, default=0)
    selftest.add_argument("--json", action="store_true")

    status = sub.add_parser("status", parents=[common], help="what the store holds")
    status.add_argument("--json", action="store_true")
    return parser



def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, passed_on = parser.parse_known_args(argv)
    if passed_on and args.command != "chat":
        parser.error(f"unrecognized arguments: {' '.join(passed_on)}")
    args.app_options = passed_on
    args.store = getattr(args, "store", None) or default_store()
    args.model = getattr(args, "model", None)
    args.device = getattr(args, "device", None)
    logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
                        format=f"engine {args.command}: %(message)s")
    command = importlib.import_module(f"engine.cli.{args.command}")
    try:
        return command.run(args) or 0
    except (UsageError, ModelError) as error:
        print(f"engine {args.command}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except RunError as error:
        print(f"engine {args.command}: {error}", file=sys.stderr)
        return EXIT_STOPPED
    except KeyboardInterrupt:
        print(f"engine {args.command}: interrupted", file=sys.stderr)
        return 130
