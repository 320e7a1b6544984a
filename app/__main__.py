"""`python -m app [options]`: the same as `engine chat [options]`."""

import sys

from engine.cli import main

sys.exit(main(["chat", *sys.argv[1:]]))
