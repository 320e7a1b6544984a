"""`python -m app [options]` (and `engine chat [options]`, which hands over to it): the web chat."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from engine import ModelError, UsageError, default_store

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="engine chat", description="The web chat over your corpus store.")
    parser.add_argument("--store", type=Path, default=None,
                        help="the corpus store (default: $ENGINE_STORE or one personal store in the user data dir)")
    parser.add_argument("--model", default=None,
                        help="a Llama-family GGUF file or Hugging Face folder (default: $ENGINE_MODEL or the "
                             "embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if present)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--auth", default=None, metavar="USER:PASS", help="require this login for every request")
    parser.add_argument("--max-upload-mb", type=float, default=50.0,
                        help="largest file accepted by upload (default 50)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="engine chat: %(message)s")
    from app.server import ServeOptions, start

    try:
        start(ServeOptions(args.store or default_store(), args.model, args.device, args.host, args.port, args.auth,
                           args.max_upload_mb))
    except (UsageError, ModelError) as error:
        print(f"engine chat: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("engine chat: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
