"""HTML for the page: an answer's sources with the part it used marked, a passage in its document, figures.

Every piece of corpus text is escaped: documents are the user's, but a page that renders them raw would
run whatever markup a downloaded file carries.
"""

from __future__ import annotations

from html import escape

from app.corpus import AddProgress, AddResult
from engine import Answer, Citation, Evidence, Grounds, StoreFigures, unknown_said

NOT_FOUND = "Not found in your files."
FIRST_CITED = "first-cited"  # the id of a document view's first cited line, which the page scrolls to


def where(citation: Citation) -> str:
    """'notes/wifi.md, lines 3-5' / 'manual.pdf, page 2, line 7'."""
    page = f", page {citation.page}" if citation.page else ""
    first, last = citation.start_line, citation.end_line
    lines = f"line {first}" if first == last else f"lines {first}-{last}"
    return f"{citation.path}{page}, {lines}"


def marked_lines(first_line: int, lines: list[str], start: int, end: int, anchor: str | None = None) -> str:
    """Numbered lines, those from `start` to `end` marked; the first of them carries the id `anchor`, if given."""
    rows = []
    for number, line in enumerate(lines, start=first_line):
        text = escape(line) or "&nbsp;"
        cited = start <= number <= end
        where = f' id="{anchor}"' if anchor and number == start else ""
        rows.append(f'<div class="line{" cited" if cited else ""}"{where}><span class="num">{number}</span>'
                    f'{"<mark>" + text + "</mark>" if cited else text}</div>')
    return "".join(rows)


def evidence_html(evidence: list[Evidence]) -> str:
    """The supporting sentence(s), verbatim, with file and lines: what a person checks first."""
    rows = []
    for item in evidence:
        page = f", page {item.page}" if item.page else ""
        lines = f"line {item.start_line}" if item.start_line == item.end_line else f"lines {item.start_line}-{item.end_line}"
        rows.append(f'<div class="evidence"><b>Evidence</b> · {escape(item.path)}{page}, {lines}'
                    f"<blockquote>{escape(' '.join(item.text.split()))}</blockquote></div>")
    return "".join(rows)


def _not_found_head(unknown: list[str], closest: str = "") -> str:
    said = " ".join(part for part in (escape(unknown_said(unknown)), closest) if part)
    return f'<p class="ungrounded"><b>{NOT_FOUND}</b>{" " + said if said else ""}</p>'


def grounds_html(grounds: Grounds) -> str:
    """What the panel shows while the answer streams: the evidence (or that the question was not found), known
    before the first token, and a line (class `pending`) saying the sources follow when the answer is done."""
    if not grounds.found:
        return (_not_found_head(grounds.unknown)
                + '<p class="muted pending">The closest passages follow when the engine is done.</p>')
    return evidence_html(grounds.evidence) + '<p class="muted pending">The sources follow when the answer is done.</p>'


def listed(answer: Answer) -> list[Citation]:
    """The passages the panel lists: the citations that support the answer, or, when the question was not
    found, the closest passages."""
    return answer.citations if answer.found else answer.closest


def sources_html(answer: Answer) -> str:
    """Evidence first, then the sources that support the answer; when the question was not found, that said
    plainly and the closest passages offered as what they are, not as support."""
    if not answer.found:
        head = _not_found_head(answer.unknown, "The closest passages the engine read (none of them answers it):")
        if not answer.closest:
            return head
    else:
        head = evidence_html(answer.evidence)
        if answer.unsupported:
            head += (f'<p class="ungrounded">Unsupported (in no passage of your files): '
                     f"{escape(', '.join(answer.unsupported))}</p>")
        if not answer.grounded:
            head += (f'<p class="ungrounded">This answer drew little on your files ({answer.corpus_share:.0%} of its '
                     f"attention): it may come from the model alone.</p>")
        if not answer.citations:
            return head + ('<p class="muted">No passage the engine read holds what the answer says: check it '
                           "against the evidence.</p>")
    cards = []
    for number, citation in enumerate(listed(answer), start=1):
        first, last = citation.context_lines
        body = marked_lines(first, citation.context.split("\n"), citation.start_line, citation.end_line)
        share = (f'<span class="score">{citation.score:.0%} of the answer\'s attention</span>' if answer.found
                 else "")  # a question not found has no answer to attend
        cards.append(f'<div class="source"><div class="head"><b>[{number}] {escape(where(citation))}</b>{share}</div>'
                     f'<div class="passage">{body}</div></div>')
    return head + "".join(cards)


def passage_html(citation: Citation, first_line: int, lines: list[str]) -> str:
    """A passage in its document, the cited lines marked, the first of them with the id FIRST_CITED (the page
    scrolls the view to it: `SCROLL_TO_CITED`)."""
    if not lines:
        return f'<p class="muted">{escape(citation.path)} is no longer in the store.</p>'
    body = marked_lines(first_line, lines, citation.start_line, citation.end_line, anchor=FIRST_CITED)
    return (f'<div class="source"><div class="head"><b>{escape(where(citation))}</b> in its document</div>'
            f'<div class="passage">{body}</div></div>')


# Run by the document view (a gr.HTML's js_on_load) each time it shows a passage: scrolls the passage's box, and
# only it (not the page), so that the first cited line sits a sixth of the way down (the lines before it a scroll
# away). Without it the box opened at its first line, and a few long wrapped lines hid the cited ones below.
SCROLL_TO_CITED = f"""
watch('value', () => {{
  const line = element.querySelector('#{FIRST_CITED}');
  const box = line && line.closest('.passage');
  if (box) box.scrollTop = line.offsetTop - box.offsetTop - box.clientHeight / 6;
}});
"""


def figures_markdown(figures: StoreFigures, root: str) -> str:
    per_token = f"{figures.state_bytes_per_token:.0f} bytes/token" if figures.processed_tokens else "—"
    backlog = f", {figures.unprocessed_tokens:,} not read by the model yet" if figures.unprocessed_tokens else ""
    return (f"**Store** `{root}` · **documents** {figures.documents:,} · **tokens** {figures.tokens:,}{backlog} · "
            f"**on disk** {figures.bytes_on_disk / 2**20:,.1f} MB (engine states {per_token}) · "
            f"**model** {figures.model}")


def progress_text(progress: AddProgress) -> str:
    if progress.total_tokens:
        eta = progress.eta_seconds
        return (f"{progress.phase}: {progress.tokens:,}/{progress.total_tokens:,} tokens, "
                f"{progress.tokens_per_second:,.0f} tokens/s" + (f", about {eta:,.0f} s left" if eta else ""))
    return (f"{progress.phase}: {progress.files:,}/{progress.total_files:,} files, {progress.tokens:,} tokens, "
            f"{progress.tokens_per_second:,.0f} tokens/s")


def add_result_markdown(result: AddResult) -> str:
    lines = [f"Added {result.added:,}, updated {result.updated:,}, unchanged {result.unchanged:,}; the model read "
             f"{result.tokens_read:,} new tokens in {result.seconds:,.1f} s."]
    lines += [f"- refused **{escape(name)}**: {escape(reason)}" for name, reason in result.refused]
    lines += [f"- skipped **{escape(name)}**: {escape(reason)}" for name, reason in result.skipped]
    return "\n".join(lines)


CSS = """
.source { border: 1px solid var(--border-color-primary); border-radius: 6px; margin: 0 0 10px 0; }
.source .head { display: flex; justify-content: space-between; padding: 4px 8px;
                background: var(--background-fill-secondary); }
.source .score, .muted { color: var(--body-text-color-subdued); }
.passage { font-family: var(--font-mono); font-size: 12px; white-space: pre-wrap; padding: 4px 8px;
           max-height: 260px; overflow-y: auto; }
.passage .num { display: inline-block; width: 3em; color: var(--body-text-color-subdued); user-select: none; }
.passage mark { background: #fde68a; color: inherit; }
.ungrounded { color: #b45309; }
.evidence { margin: 0 0 10px 0; }
.evidence blockquote { margin: 4px 0 0 0; padding-left: 8px; border-left: 3px solid #fde68a; }
"""
