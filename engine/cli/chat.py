"""`engine chat`: hands the process over to the web app, `python -m app`.

The app is a layer above the engine, so the engine imports nothing of it: this command replaces its own
process with the app's, passing the options on (the app parses and checks them itself).
"""

from __future__ import annotations

import argparse
import os
import sys


def app_argv(args: argparse.Namespace) -> list[str]:
    """The `python -m app` command line that carries `engine chat`'s options."""
    argv = [sys.executable, "-m", "app", "--store", str(args.store), "--host", args.host, "--port", str(args.port),
            "--max-upload-mb", str(args.max_upload_mb)]
    for option, value in (("--model", args.model), ("--device", args.device), ("--auth-file", args.auth_file)):
        if value is not None:
            argv += [option, str(value)]
    if args.auth is not None:  # a value after --auth is passed on to be refused there, with the reason
        argv += ["--auth", args.auth] if args.auth else ["--auth"]
    argv += ["--no-token"] if args.no_token else []
    for root in args.allow_root:
        argv += ["--allow-root", str(root)]
    return argv


def run(args: argparse.Namespace) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    argv = app_argv(args)
    os.execv(argv[0], argv)
