"""The page: Chat (streamed answers beside their sources), Corpus (add, upload, remove, figures),
Self-test (passkey retrieval by length) and Settings."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pandas as pd

from app import render
from app.corpus import AddProgress, AskError, Corpus
from app.uploads import Upload
from engine import READABLE_SUFFIXES, TOP_K, Citation, Grounds, StoreFigures, Token, UsageError, run_passkey, summarise

DOCUMENT_COLUMNS = ["name", "kind", "status", "tokens", "reason", "path"]
SELFTEST_LENGTHS = {"1k": 1024, "2k": 2048, "4k": 4096, "8k": 8192, "16k": 16384, "32k": 32768}
HIDDEN_SETTINGS = {"key_means"}  # numbers, not settings a person reads


def build_ui(corpus: Corpus) -> gr.Blocks:
    with gr.Blocks(title="wholecorpus") as page:
        gr.Markdown("## wholecorpus — ask your whole corpus")
        banner = gr.Markdown(elem_id="banner")
        top_k = gr.Slider(1, 16, value=TOP_K, step=1, label="top-k: blocks of 64 tokens retrieved per question",
                          render=False, elem_id="top-k")
        temperature = gr.Slider(0.0, 1.5, value=0.0, step=0.05, label="temperature (0: always the likeliest word)",
                                render=False, elem_id="temperature")
        with gr.Tab("Chat"):
            chat_tab(corpus, top_k, temperature)
        with gr.Tab("Corpus"):
            corpus_tab(corpus, banner, page)
        with gr.Tab("Self-test"):
            selftest_tab(corpus)
        with gr.Tab("Settings"):
            top_k.render()
            temperature.render()
            fixed = gr.Markdown(elem_id="settings")
        page.load(lambda: settings_markdown(corpus), None, fixed, api_name=False)
    return page


def empty_store_note(figures: StoreFigures, root: Path) -> str:
    if figures.processed_tokens:
        return ""
    return (f"**Your store is empty.** Add a folder or upload files on the **Corpus** tab, or run "
            f"`engine ingest PATH --store {root}`; then ask here.")


def chat_tab(corpus: Corpus, top_k: gr.Slider, temperature: gr.Slider) -> None:
    cited = gr.State([])
    with gr.Row():
        with gr.Column(scale=3):
            chatbot = gr.Chatbot(label="Conversation", height=520, elem_id="chat",
                                 placeholder="Ask anything about your notes, code and documents.")
            with gr.Row():
                question = gr.Textbox(show_label=False, placeholder="Ask your corpus…", scale=5, elem_id="question")
                send = gr.Button("Send", variant="primary", scale=1, elem_id="send")
        with gr.Column(scale=2):
            gr.Markdown("**Sources**")
            sources = gr.HTML(elem_id="sources")
            pick = gr.Radio(label="Open a source in its document", choices=[], elem_id="pick")
            passage = gr.HTML(elem_id="passage", js_on_load=render.SCROLL_TO_CITED)

    def respond(message: str, history: list, k: float, temp: float):
        if not message.strip():
            yield gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return
        events = corpus.ask(message, top_k=int(k), temperature=float(temp), previous=last_question(history))
        history = list(history) + [{"role": "user", "content": message}, {"role": "assistant", "content": ""}]
        yield history, "", "", gr.update(choices=[], value=None), "", []
        for value in events:
            if isinstance(value, Grounds):  # before the first token: the evidence shows while the answer streams
                if not value.found:  # no answer follows, only the closest passages
                    history[-1]["content"] = render.NOT_FOUND
                yield history, gr.skip(), render.grounds_html(value), gr.skip(), gr.skip(), gr.skip()
            elif isinstance(value, Token):
                history[-1]["content"] += value.text
                yield history, gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
            elif isinstance(value, AskError):
                history[-1]["content"] = f"⚠ {value.message}"
                yield history, gr.skip(), "", gr.skip(), gr.skip(), []
            else:
                # the answer kept (a looping last line dropped); none presented when the question was not found
                history[-1]["content"] = value.text if value.found else render.NOT_FOUND
                shown = render.listed(value)
                choices = [(f"[{n}] {render.where(c)}", n - 1) for n, c in enumerate(shown, start=1)]
                yield (history, gr.skip(), render.sources_html(value),
                       gr.update(choices=choices, value=None), "", shown)

    def open_source(index: int | None, citations: list[Citation]) -> str:
        if index is None or index >= len(citations):
            return ""
        first, lines = corpus.passage(citations[index])
        return render.passage_html(citations[index], first, lines)

    outputs = [chatbot, question, sources, pick, passage, cited]
    inputs = [question, chatbot, top_k, temperature]
    send.click(respond, inputs, outputs, concurrency_id="answer", api_name="ask")
    question.submit(respond, inputs, outputs, concurrency_id="answer", api_name=False)
    pick.change(open_source, [pick, cited], passage, api_name=False)
    chatbot.clear(lambda: ("", gr.update(choices=[], value=None), "", []), None, [sources, pick, passage, cited],
                  api_name=False)


def removable(documents: list[dict]) -> gr.Dropdown:
    return gr.update(choices=[(row["name"], row["path"]) for row in documents if row["live"]], value=None)


def corpus_tab(corpus: Corpus, banner: gr.Markdown, page: gr.Blocks) -> None:
    figures = gr.Markdown(elem_id="figures")
    with gr.Row():
        folder = gr.Textbox(label="Add a folder or file on this machine", placeholder="/home/me/notes", scale=4)
        add_folder = gr.Button("Add", scale=1, elem_id="add-folder")
    upload = gr.File(label="…or upload files (Markdown, text, PDF, source code)", file_count="multiple",
                     file_types=sorted(READABLE_SUFFIXES), elem_id="upload")
    status = gr.Markdown(elem_id="add-status")
    documents = gr.Dataframe(headers=DOCUMENT_COLUMNS, interactive=False, wrap=True, elem_id="documents",
                             label="Documents", column_widths=["24%", "9%", "8%", "8%", "21%", "30%"])
    with gr.Row():
        chosen = gr.Dropdown(label="Remove a document from the store", choices=[], scale=4, elem_id="remove-choice")
        remove = gr.Button("Remove", variant="stop", scale=1)

    def refreshed():
        figures, rows = corpus.figures(), corpus.documents()
        return (render.figures_markdown(figures, str(corpus.root)), pd.DataFrame(rows, columns=DOCUMENT_COLUMNS),
                removable(rows), empty_store_note(figures, corpus.root))

    def reporter(progress: gr.Progress):
        def report(state: AddProgress) -> None:
            done, total = (state.tokens, state.total_tokens) if state.total_tokens else (state.files, state.total_files)
            progress((done, max(total, 1)), desc=render.progress_text(state))
        return report

    def add_from_folder(text: str, progress=gr.Progress()):
        if not text.strip():
            return ("Type the path of a folder or file on this machine.", *refreshed())
        try:
            result = corpus.add_paths([Path(text.strip()).expanduser()], reporter(progress))
        except UsageError as error:
            return (f"⚠ {error}", *refreshed())
        except OSError as error:  # a full disk, say: what was committed stays, the rest is retried next time
            return (f"⚠ adding stopped: {error}", *refreshed())
        return (render.add_result_markdown(result), *refreshed())

    def add_uploaded(files: list[str] | None, progress=gr.Progress()):
        if not files:
            return (gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip())
        uploads = [Upload(Path(path), Path(path).name) for path in files]
        try:
            result = corpus.add_uploads(uploads, reporter(progress))
        except UsageError as error:
            return (None, f"⚠ {error}", *refreshed())
        except OSError as error:
            return (None, f"⚠ adding stopped: {error}", *refreshed())
        return (None, render.add_result_markdown(result), *refreshed())

    def remove_document(path: str | None):
        if not path:
            return ("Choose a document to remove.", *refreshed())
        message = "Removed: it is no longer retrieved or cited (adding its folder again brings it back)." \
            if corpus.remove(path) else "That document is not in the store any more."
        return (message, *refreshed())

    shown = [figures, documents, chosen, banner]
    add_folder.click(add_from_folder, folder, [status, *shown], concurrency_id="add", api_name="add_folder")
    folder.submit(add_from_folder, folder, [status, *shown], concurrency_id="add", api_name=False)
    upload.upload(add_uploaded, upload, [upload, status, *shown], concurrency_id="add", api_name="add_uploads")
    remove.click(remove_document, chosen, [status, *shown], concurrency_id="add", api_name="remove")
    page.load(refreshed, None, shown, api_name=False)


def selftest_tab(corpus: Corpus) -> None:
    gr.Markdown("Plants a pass key at a random depth in a haystack of filler, reads it through the same ingest "
                "and engine path as your documents (in a temporary store), and asks for it; beside it, the same "
                "model reading the whole haystack with full attention, where it fits its context.")
    with gr.Row():
        lengths = gr.CheckboxGroup(list(SELFTEST_LENGTHS), value=["1k", "4k"], label="haystack lengths (tokens)")
        trials = gr.Slider(1, 20, value=3, step=1, label="trials per length")
        start = gr.Button("Run", variant="primary", elem_id="selftest-run")
    table = gr.Dataframe(headers=["tokens", "trials", "engine", "full attention"], interactive=False,
                         elem_id="selftest-table")
    plot = gr.LinePlot(x="tokens", y="accuracy", color="method", y_lim=[0, 1], title="passkey accuracy by length",
                       elem_id="selftest-plot")

    def run(chosen: list[str], count: float, progress=gr.Progress()):
        chosen_lengths = [SELFTEST_LENGTHS[name] for name in SELFTEST_LENGTHS if name in chosen]
        if not chosen_lengths:
            raise gr.Error("Choose at least one length.")
        total = len(chosen_lengths) * int(count)
        done: list = []

        def counted(result) -> None:
            done.append(result)
            progress((len(done), total), desc=f"{len(done)}/{total} trials")

        results = run_passkey(corpus.runtime, chosen_lengths, int(count), on_result=counted)
        rows, points = [], []
        for row in summarise(results):
            baseline, retrieved = row["baseline_accuracy"], row["retrieved"]
            rows.append([row["length"], row["trials"], f"{row['accuracy']:.0%}", f"{retrieved:.0%}",
                         "—" if baseline is None else f"{baseline:.0%}"])
            points.append({"tokens": row["length"], "accuracy": row["accuracy"], "method": "engine"})
            if baseline is not None:
                points.append({"tokens": row["length"], "accuracy": baseline, "method": "full attention"})
        return (pd.DataFrame(rows, columns=["tokens", "trials", "engine", "needle retrieved", "full attention"]),
                pd.DataFrame(points))

    start.click(run, [lengths, trials], [table, plot], concurrency_id="selftest", api_name="selftest")


def settings_markdown(corpus: Corpus) -> str:
    settings = corpus.engine_settings()
    if settings is None:
        fixed = "not set yet: the store takes the engine's settings when the model first reads it"
    else:
        shown = {name: value for name, value in settings.items() if name not in HIDDEN_SETTINGS}
        shown["model_digest"] = shown["model_digest"][:12]
        fixed = ", ".join(f"{name} {value}" for name, value in shown.items())
    return (f"**Model** `{corpus.runtime.source}` (digest {corpus.runtime.digest[:12]}) on **{corpus.runtime.device}** "
            f"— chosen when the app starts (`engine chat --model … --device …`).\n\n**The store's fixed settings** "
            f"(chosen at its first processing, read-only): {fixed}")


def last_question(history: list) -> str | None:
    """The user's latest question in this conversation (the one a follow-up refers back to), if any."""
    for turn in reversed(history):
        if turn.get("role") == "user" and isinstance(turn.get("content"), str) and turn["content"].strip():
            return turn["content"]
    return None
