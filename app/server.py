"""Starting the web app: `python -m app` (and `engine chat`, which hands over to it) ends here."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from engine import UsageError

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # a private tool: no calls home


@dataclass
class ServeOptions:
    store: Path
    model: str | None = None
    device: str | None = None
    host: str = "127.0.0.1"
    port: int = 7860
    auth: str | None = None  # "USER:PASS"
    max_upload_mb: float = 50.0


def parse_auth(text: str | None) -> tuple[str, str] | None:
    if text is None:
        return None
    user, colon, password = text.partition(":")
    if not colon or not user or not password:
        raise UsageError("--auth takes USER:PASS (both non-empty)")
    return user, password


def start(options: ServeOptions, block: bool = True):
    """Loads the model, opens (or creates) the store and serves the page; returns (Gradio app, URL, corpus)
    when `block` is false, for tests and benchmarks that drive the page themselves."""
    auth = parse_auth(options.auth)
    if options.max_upload_mb <= 0:
        raise UsageError(f"--max-upload-mb must be positive (got {options.max_upload_mb:g})")
    import gradio as gr  # imported here: it takes seconds, and the rest of the CLI never needs it

    from app.corpus import Corpus
    from app.render import CSS
    from app.ui import build_ui
    from engine import load_runtime

    max_bytes = int(options.max_upload_mb * 2**20)
    corpus = Corpus(options.store, load_runtime(options.model, options.device), max_bytes)
    page = build_ui(corpus).queue(default_concurrency_limit=1)
    _, url, _ = page.launch(server_name=options.host, server_port=options.port, auth=auth, max_file_size=max_bytes,
                            quiet=True, prevent_thread_lock=True, css=CSS, theme=gr.themes.Soft(),
                            footer_links=[], ssr_mode=False)
    print(f"wholecorpus chat on {url} (store {corpus.root}); Ctrl-C stops it", flush=True)
    if not block:
        return page, url, corpus
    try:
        page.block_thread()
    finally:
        corpus.close()
    return None
