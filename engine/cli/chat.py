"""`engine chat`: the web app over the store.

The one place the engine's command line reaches up into `app/`: the app is a layer above the engine,
and `engine chat` is only its front door.
"""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from app.server import ServeOptions, start

    start(ServeOptions(args.store, args.model, args.device, args.host, args.port, args.auth, args.max_upload_mb))
    return 0
