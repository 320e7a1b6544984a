"""Starting the web app: `python -m app` (and `engine chat`, which hands over to it) ends here.

Safe by default, the way Jupyter is: a random token guards every request unless a login (`--auth`) is
set or the user opts out (`--no-token`); Host headers are checked (`app.guard`); folders may be added
only under the roots given at start; uploads and Gradio's temporary copies stay private to this user.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from app.guard import AllowedHosts, Guard, new_token
from engine import UsageError

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # a private tool: no calls home


@dataclass
class ServeOptions:
    store: Path
    model: str | None = None
    device: str | None = None
    host: str = "127.0.0.1"
    port: int = 7860
    auth: str | None = None  # "USER:PASS", from a file or the environment, never the command line
    max_upload_mb: float = 50.0
    token: str | None = None  # None: a random one, unless `auth` is set or `no_token`
    no_token: bool = False
    roots: tuple[Path, ...] = field(default_factory=tuple)  # "add a folder" only under these (none: the home dir)


def parse_auth(text: str | None) -> tuple[str, str] | None:
    if text is None:
        return None
    user, colon, password = text.strip().partition(":")
    if not colon or not user or not password:
        raise UsageError("the login takes USER:PASS (both non-empty)")
    return user, password


def chosen_token(options: ServeOptions) -> str | None:
    """The token every request must carry: none with a login or when opted out, else the given or a random one."""
    if options.auth is not None or options.no_token:
        return None
    return options.token or new_token()


def start(options: ServeOptions, block: bool = True):
    """Loads the model, opens (or creates) the store and serves the page; returns (Gradio app, URL, corpus)
    when `block` is false, for tests and benchmarks that drive the page themselves."""
    auth = parse_auth(options.auth)
    if options.max_upload_mb <= 0:
        raise UsageError(f"--max-upload-mb must be positive (got {options.max_upload_mb:g})")
    if "GRADIO_TEMP_DIR" not in os.environ:
        # Gradio keeps each upload in its temporary folder before the app copies it into the store: a folder
        # of this user's own (0700), not the shared /tmp/gradio, so another user cannot read the uploads there.
        os.environ["GRADIO_TEMP_DIR"] = tempfile.mkdtemp(prefix="wholecorpus-uploads-")
    import gradio as gr  # imported here: it takes seconds, and the rest of the CLI never needs it
    from starlette.middleware import Middleware

    from app.corpus import Corpus
    from app.render import CSS
    from app.ui import build_ui
    from engine import load_runtime

    token = chosen_token(options)
    max_bytes = int(options.max_upload_mb * 2**20)
    corpus = Corpus(options.store, load_runtime(options.model, options.device), max_bytes, options.roots or None)
    page = build_ui(corpus).queue(default_concurrency_limit=1)
    guard = Middleware(Guard, hosts=AllowedHosts.for_address(options.host), token=token)
    _, url, _ = page.launch(server_name=options.host, server_port=options.port, auth=auth, max_file_size=max_bytes,
                            quiet=True, prevent_thread_lock=True, css=CSS, theme=gr.themes.Soft(),
                            footer_links=[], ssr_mode=False, app_kwargs={"middleware": [guard]})
    link = f"{url}?token={token}" if token else url
    print(f"wholecorpus chat on {link} (store {corpus.root}); Ctrl-C stops it", flush=True)
    if not block:
        return page, url, corpus
    try:
        page.block_thread()
    finally:
        corpus.close()
    return None
