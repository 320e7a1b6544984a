"""`python -m app [options]` (and `engine chat [options]`, which hands over to it): the web chat."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from app.auth import read_auth
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
    parser.add_argument("--auth", nargs="?", const="", default=None, metavar="",
                        help="require a login (instead of the token) for every request: USER:PASS is read from "
                             "--auth-file or $ENGINE_CHAT_AUTH, never from the command line")
    parser.add_argument("--auth-file", type=Path, default=None, metavar="FILE",
                        help="a file readable only by you holding USER:PASS (implies --auth)")
    parser.add_argument("--no-token", action="store_true",
                        help="serve without the random token (anyone who can reach the port can use the chat)")
    parser.add_argument("--allow-root", action="append", type=Path, default=[], metavar="DIR",
                        help="folders that may be added from the page lie under DIR (repeatable; default: your "
                             "home directory)")
    parser.add_argument("--max-upload-mb", type=float, default=50.0,
                        help="largest file accepted by upload (default 50)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="engine chat: %(message)s")
    from app.server import ServeOptions, start

    try:
        auth = read_auth(args.auth, args.auth_file)
        if auth is not None and args.no_token:
            raise UsageError("--no-token is for a chat without a login: with --auth the login guards it")
        start(ServeOptions(args.store or default_store(), args.model, args.device, args.host, args.port, auth,
                           args.max_upload_mb, no_token=args.no_token, roots=tuple(args.allow_root)))
    except (UsageError, ModelError) as error:
        print(f"engine chat: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("engine chat: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
