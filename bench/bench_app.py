"""Time to first token in the web chat, side by side with the engine's own `first_token_s`.

    python bench/bench_app.py [--rounds 5]

Ingests data/ into a temporary store, starts the app on it and drives Debian's Chromium (Playwright):
for each of the sample questions, press Send and time the first streamed token on the page (and where
that time goes: Send to the server's handler, the engine's first token, the token's way onto the page);
then ask the engine the same question in the same process (its `first_token_s`). Medians go to
bench/results/app_first_token_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from app.server import ServeOptions, start
from engine.answer.generation import Answer, Token
from engine.api import open_store
from engine.runtime import load_runtime

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the page driver is shared with the browser test
from tests.app.browser import CHROMIUM_FLAGS, SOURCES_SHOWN, TIMEOUT_MS, send_question  # noqa: E402

QUESTIONS = [q["question"] for q in json.loads((ROOT / "data" / "questions.json").read_text())["questions"]]


def browser_first_token(page, question: str) -> float:
    first = send_question(page, question)
    page.wait_for_function(SOURCES_SHOWN, timeout=TIMEOUT_MS)
    return first


def traced(ask, marks: dict):
    """`corpus.ask` noting when the page's request reached it and when its first token came out."""
    def ask_traced(*args, **kwargs):
        marks["called"] = time.perf_counter()
        for event in ask(*args, **kwargs):
            if isinstance(event, Token) and "first" not in marks:
                marks["first"] = time.perf_counter()
            yield event
    return ask_traced


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="questions asked (from data/questions.json)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-app-") as workdir:
        store = Path(workdir) / "store"
        with open_store(store, runtime=load_runtime(None, "cpu"), write=True) as writer:
            writer.add([ROOT / "data"])
            writer.process()
        token = secrets.token_urlsafe(32)
        page_app, url, corpus = start(ServeOptions(store, device="cpu", port=7871, token=token), block=False)
        rows = []
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_FLAGS)
                page = browser.new_page()
                page.goto(f"{url}?token={token}")
                page.wait_for_selector("#question textarea", timeout=60_000)
                browser_first_token(page, QUESTIONS[0])  # warm-up: the index is built at the first question
                ask, marks = corpus.ask, {}
                for question in QUESTIONS[1:args.rounds + 1]:
                    marks.clear()
                    corpus.ask = traced(ask, marks)  # the page's handler looks it up at each question
                    sent = time.perf_counter()
                    in_browser = browser_first_token(page, question)
                    corpus.ask = ask
                    engine = next(e for e in corpus.ask(question) if isinstance(e, Answer)).timings["first_token_s"]
                    rows.append({"question": question, "browser_s": round(in_browser, 3), "engine_s": round(engine, 3),
                                 "send_to_server_s": round(marks["called"] - sent, 3),
                                 "server_first_token_s": round(marks["first"] - marks["called"], 3),
                                 "token_to_page_s": round(sent + in_browser - marks["first"], 3)})
                    print(rows[-1], flush=True)
                browser.close()
        finally:
            page_app.close()
            corpus.close()
    result = {
        "what": "seconds from pressing Send to the first streamed token in Chromium vs the engine's first_token_s",
        "median_browser_s": statistics.median(r["browser_s"] for r in rows),
        "median_engine_s": statistics.median(r["engine_s"] for r in rows),
        "median_difference_s": round(statistics.median(r["browser_s"] - r["engine_s"] for r in rows), 3),
        "median_send_to_server_s": statistics.median(r["send_to_server_s"] for r in rows),
        "median_token_to_page_s": statistics.median(r["token_to_page_s"] for r in rows),
        "rounds": rows, "machine": f"{platform.machine()}, {os.cpu_count()} cores, CPU",
        "date": time.strftime("%Y-%m-%d"), "load_average_at_end": round(os.getloadavg()[0], 2)}
    out = ROOT / "bench" / "results" / "app_first_token_bench.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "rounds"}))


if __name__ == "__main__":
    main()
