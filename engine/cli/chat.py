"""`engine chat`: hands the process over to the web app, `python -m app`.

The app is a layer above the engine, so the engine imports nothing of it: this command replaces its own
process with the app's, passing the options on (the app parses and checks them itself, and prints
the help).
"""

from __future__ import annotations

import argparse
import os
import sys


def app_argv(args: argparse.Namespace) -> list[str]:
    """The `python -m app` command line: the store and model as the engine resolved them, then the chat's own
    options as they were given."""
    argv = [sys.executable, "-m", "app", "--store", str(args.store)]
    for option, value in (("--model", args.model), ("--device", args.device)):
        if value is not None:
            argv += [option, value]
    return argv + args.app_options


def run(args: argparse.Namespace) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    argv = app_argv(args)
    os.execv(argv[0], argv)
