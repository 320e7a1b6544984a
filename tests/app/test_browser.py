"""The app in a real browser: Playwright driving Debian's Chromium headless against a running server.

Under `.ci/run` (WHOLECORPUS_REQUIRE_BROWSER=1) a missing browser fails the test; elsewhere it is skipped
with the reason. Screenshots and the time from pressing Send to the first streamed token (beside the
engine's own `first_token_s` for the same question on the same store) go to the test's own temporary
folder, or to the folder WHOLECORPUS_RESULTS names (`WHOLECORPUS_RESULTS=bench/results` refreshes the
README's screenshot): a test run leaves the checkout as it found it.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from pathlib import Path

import pytest

from engine import Answer
from tests.app.browser import CHROMIUM_FLAGS, SOURCES_SHOWN, TIMEOUT_MS, send_question
from tests.app.conftest import TOKEN, serving


def chromium() -> str:
    found = os.environ.get("WHOLECORPUS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    missing = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing = "the playwright package is not installed (`pip install -e '.[test]'`)"
    if found is None:
        missing = "Chromium is not installed (as root on Debian: `apt-get install chromium`; `.ci/setup test` does it)"
    if missing is None:
        return found
    if os.environ.get("WHOLECORPUS_REQUIRE_BROWSER"):
        pytest.fail(f"browser test cannot run: {missing}")
    pytest.skip(f"browser test skipped: {missing}")


@pytest.fixture(scope="module")
def browser_page(sample_store, tmp_path_factory):
    executable = chromium()
    from playwright.sync_api import sync_playwright

    with serving(sample_store, tmp_path_factory.mktemp("browser")) as (url, corpus, root):
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{url}?token={TOKEN}")  # the link `engine chat` prints; the page keeps it as a cookie
            page.wait_for_selector("#question textarea", timeout=60_000)
            yield page, corpus
            browser.close()


def ask(page, question: str, expected_source: str) -> tuple[float, str, str]:
    """Sends `question`; returns (seconds to the first streamed token, answer, sources) once the answer is done
    and its sources shown (the test fails unless they name `expected_source`)."""
    first_token = send_question(page, question)
    page.wait_for_function(SOURCES_SHOWN, timeout=TIMEOUT_MS)
    assert expected_source in page.inner_text("#sources")
    answer = page.locator("#chat [data-testid='bot']").last.inner_text()
    return first_token, answer, page.inner_text("#sources")


# Whether the document view's first cited line lies wholly inside its scrolling box.
CITED_IN_VIEW = ("() => { const line = document.querySelector('#passage #first-cited'); "
                 "const box = line.closest('.passage').getBoundingClientRect(); const rect = line.getBoundingClientRect(); "
                 "return box.height > 0 && rect.top >= box.top && rect.bottom <= box.bottom }")


def test_ask_upload_and_ask_about_the_upload_in_a_browser(browser_page, tmp_path):
    page, corpus = browser_page
    results = Path(os.environ.get("WHOLECORPUS_RESULTS") or tmp_path)
    _, answer, sources = ask(page, "Who leads project Osprey?", "data/notes/project-osprey.md")
    assert "Kowalczyk" in answer
    page.locator("#pick label").first.click()
    page.wait_for_selector("#passage mark", timeout=60_000)
    assert "Marta Kowalczyk" in page.inner_text("#passage")
    page.screenshot(path=str(results / "app_chat.png"))

    question = "When is my dentist appointment?"
    browser_first, _, _ = ask(page, question, "todo.txt")
    engine_first = next(event for event in corpus.ask(question) if isinstance(event, Answer)).timings["first_token_s"]

    note = tmp_path / "sailing-notes.md"
    log = ["Varnished the teak rail again today and coiled the halyards; the winter cover still needs two new "
           f"grommets and the club wants the work list by Friday (entry {day})." for day in range(1, 31)]
    note.write_text("# Sailing\n\n" + "\n".join(log) + "\nThe sailboat Kestrel is moored at pier 7 in Hamnen, "
                    "berth B12.\nThe spare tiller is kept in the blue locker on the pier.\n")
    page.get_by_role("tab", name="Corpus").click()
    page.set_input_files("#upload input[type='file']", str(note))
    page.wait_for_function("() => document.querySelector('#documents').innerText.includes('sailing-notes.md')",
                           timeout=TIMEOUT_MS)
    page.screenshot(path=str(results / "app_corpus.png"), full_page=True)

    page.get_by_role("tab", name="Chat").click()
    _, answer, sources = ask(page, "Where is the sailboat Kestrel moored?", "sailing-notes.md")
    assert answer.strip()
    # Opened in its document, the cited lines (below a dozen long lines that wrap) are in view at once.
    page.locator("#pick label").first.click()
    page.wait_for_selector("#passage #first-cited", timeout=60_000)
    page.wait_for_function(CITED_IN_VIEW, timeout=10_000)
    results.joinpath("app_first_token.json").write_text(json.dumps({
        "what": "seconds from pressing Send to the first streamed token in Chromium, beside the engine's own "
                "first_token_s for the same question on the same store (measured in tests/app/test_browser.py)",
        "question": question, "browser_first_token_s": round(browser_first, 3),
        "engine_first_token_s": round(engine_first, 3), "difference_s": round(browser_first - engine_first, 3),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, CPU", "date": time.strftime("%Y-%m-%d"),
        "load_average": os.getloadavg()[0]}, indent=1) + "\n")
