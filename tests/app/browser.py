"""Driving the chat page in Chromium: shared by the browser test and bench/bench_app.py."""

from __future__ import annotations

import time

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                  "--disable-background-networking", "--disable-component-update"]
TIMEOUT_MS = 300_000
# The sources panel once the answer is done: shown, and no longer saying the sources follow (the evidence shows
# before the answer ends, with a `.pending` line).
SOURCES_SHOWN = ("() => { const panel = document.querySelector('#sources'); "
                 "return panel.innerText.trim().length > 0 && !panel.querySelector('.pending') }")


def send_question(page, question: str) -> float:
    """Types and sends `question`; returns the seconds from pressing Send until the answer's first
    streamed text shows on the page."""
    answers_before = page.locator("#chat [data-testid='bot']").count()
    page.fill("#question textarea", question)
    sent = time.perf_counter()
    page.click("#send")
    page.wait_for_function(
        "n => { const bots = document.querySelectorAll(\"#chat [data-testid='bot']\"); "
        "return bots.length > n && bots[bots.length - 1].innerText.trim().length > 0 }",
        arg=answers_before, polling="raf", timeout=TIMEOUT_MS)
    return time.perf_counter() - sent
