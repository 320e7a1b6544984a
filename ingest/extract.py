"""From a file's bytes to the text the model reads: plain text, Markdown, reStructuredText, source code, PDF.

Every outcome carries a status and, when anything was off, a reason, because a file that was skipped or
read in part must say so in the summary and in `engine status`, never vanish silently:
- `ok`: read in full; `partial`: stored, with a caveat (an encoding guessed, PDF pages that failed,
  a damaged PDF read anyway); `skipped`: nothing stored (binary, empty, encrypted, unreadable PDF).
- The kind (and for code the language) comes from the name alone, so identical bytes under two names of
  one kind are one text; binary content is recognised in the first 8 KB by a NUL byte, as git does, or by
  a share of control characters no text has (`binary_reason`).
- Journals and dated notes: a `date:` (or `created:`) line in YAML front matter, else a date in the file
  name (2024-03-14, 2024_03_14, 20240314), becomes the document's date (`front_matter_date` belongs to
  the text, `name_date` to the path; the pipeline combines them).
- PDFs keep their page numbers: the text is the pages joined by a blank line, and `pages` says where each
  page starts and ends in it.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import re
import threading
from dataclasses import dataclass

BINARY_SNIFF_BYTES = 8000
# Control bytes text never holds: C0 controls other than tab, newline, vertical tab, form feed, carriage
# return and escape (ANSI colours in logs), and DEL. Uniformly random bytes hold 27/256 = 10.5% of them
# (8 KB of them: 10.5% ± 0.3%); text, even with a few form feeds or a stray control, holds next to none.
# 5% sits far from both: a compressed or encrypted file without NUL bytes is refused, real text never.
CONTROL_BYTES = bytes([*range(0x00, 0x09), *range(0x0E, 0x1B), *range(0x1C, 0x20), 0x7F])
MAX_CONTROL_SHARE = 0.05
PAGE_JOINER = "\n\n"

MARKDOWN = {".md", ".markdown", ".mdown", ".mkd", ".mdx"}
RST = {".rst", ".rest"}
PDF = {".pdf"}
# Extension -> language name; the names that langchain-text-splitters knows get its language-aware separators.
CODE = {
    ".py": "python", ".pyi": "python", ".pyw": "python", ".js": "js", ".mjs": "js", ".cjs": "js", ".jsx": "js",
    ".ts": "ts", ".tsx": "ts", ".go": "go", ".rs": "rust", ".java": "java", ".kt": "kotlin", ".kts": "kotlin",
    ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".hpp": "cpp", ".hh": "cpp", ".cs": "csharp",
    ".rb": "ruby", ".php": "php", ".swift": "swift", ".scala": "scala", ".lua": "lua", ".hs": "haskell",
    ".ex": "elixir", ".exs": "elixir", ".pl": "perl", ".pm": "perl", ".ps1": "powershell", ".proto": "proto",
    ".sol": "sol", ".r": "r", ".tex": "latex", ".html": "html", ".htm": "html", ".cob": "cobol",
    ".sh": "shell", ".bash": "shell", ".zsh": "shell", ".sql": "sql", ".css": "css", ".scss": "css",
    ".yaml": "yaml", ".yml": "yaml", ".toml": "toml", ".json": "json", ".ini": "ini", ".cfg": "ini",
    ".mk": "make", ".cmake": "cmake", ".vim": "vim", ".el": "lisp", ".clj": "clojure", ".jl": "julia",
    ".m": "objc", ".mm": "objc", ".dart": "dart", ".zig": "zig", ".nim": "nim", ".v": "verilog", ".vue": "js",
}
CODE_NAMES = {"Makefile": "make", "Dockerfile": "docker", "CMakeLists.txt": "cmake", "Rakefile": "ruby"}

_DATE_IN_NAME = re.compile(r"(?<!\d)((?:19|20)\d\d)([-_.]?)(0[1-9]|1[0-2])\2(0[1-9]|[12]\d|3[01])(?!\d)")
_FRONT_MATTER_DATE = re.compile(r"^(?:date|created|created_at|day)\s*:\s*['\"]?(\d{4}-\d\d-\d\d)", re.M | re.I)


@dataclass
class Extracted:
    text: str
    kind: str  # text | markdown | rst | code | pdf | binary
    language: str | None = None
    status: str = "ok"  # ok | partial | skipped
    reason_code: str | None = None
    reason: str | None = None
    date: str | None = None  # from front matter (the text's own); a date in the file name is the path's
    pages: list[tuple[int, int, int]] | None = None  # (page number from 1, char start, char end) for PDFs


def kind_of(name: str) -> tuple[str, str | None]:
    """The kind and (for code) the language a file's name promises, before its bytes are looked at."""
    base = name.rsplit("/", 1)[-1]
    dot = base.rfind(".")
    ext = base[dot:].lower() if dot > 0 else ""
    if ext in MARKDOWN:
        return "markdown", None
    if ext in RST:
        return "rst", None
    if ext in PDF:
        return "pdf", None
    if ext in CODE:
        return "code", CODE[ext]
    if base in CODE_NAMES:
        return "code", CODE_NAMES[base]
    return "text", None


def extract(name: str, data: bytes) -> Extracted:
    """The text of one file whose name (for the kind and a date) is `name` and whose bytes are `data`."""
    kind, language = kind_of(name)
    if not data:
        return Extracted("", kind, language, "skipped", "empty", "empty file")
    if kind == "pdf":
        extracted = _pdf(data)
    else:
        extracted = _text(data, kind, language)
    if extracted.status != "skipped":
        extracted.date = front_matter_date(extracted.text)
    return extracted


def front_matter_date(text: str) -> str | None:
    """An ISO date from YAML front matter (`date: 2024-03-14`, or `created:`), if the text has one."""
    if text.startswith("---"):
        end = text.find("\n---", 3, 4096)
        if end > 0:
            match = _FRONT_MATTER_DATE.search(text, 3, end)
            if match and _valid_date(match.group(1)):
                return match.group(1)
    return None


def name_date(name: str) -> str | None:
    """An ISO date from the file name (2024-03-14, 2024_03_14, 20240314), the last one if several."""
    for match in reversed(list(_DATE_IN_NAME.finditer(name.rsplit("/", 1)[-1]))):
        candidate = f"{match.group(1)}-{match.group(3)}-{match.group(4)}"
        if _valid_date(candidate):
            return candidate
    return None


def _valid_date(text: str) -> bool:
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _text(data: bytes, kind: str, language: str | None) -> Extracted:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError as error:
            return Extracted("", kind, language, "skipped", "encoding", f"damaged UTF-16 text: {error.reason}")
        return _nonblank(Extracted(text, kind, language))
    binary = binary_reason(data[:BINARY_SNIFF_BYTES])
    if binary is not None:
        return Extracted("", "binary", None, "skipped", "binary", binary)
    try:
        return _nonblank(Extracted(data.decode("utf-8-sig"), kind, language))
    except UnicodeDecodeError as error:
        bad = f"invalid UTF-8 (byte 0x{data[error.start]:02x} at offset {error.start})"
    try:
        text, encoding = data.decode("cp1252"), "Windows-1252"
    except UnicodeDecodeError:
        text, encoding = data.decode("latin-1"), "Latin-1"
    return _nonblank(Extracted(text, kind, language, "partial", "encoding", f"{bad}: read as {encoding}"))


def binary_reason(head: bytes) -> str | None:
    """Why the first bytes of a file say it is binary, or None for text.

    A NUL byte alone is git's rule; random bytes without one (compressed or encrypted data under a `.py`
    name) would pass it and be read as Latin-1, cost the model's time and be cited, so the share of
    control bytes is checked too.
    """
    if b"\0" in head:
        return "binary file (NUL bytes)"
    if not head:
        return None
    controls = len(head) - len(head.translate(None, CONTROL_BYTES))
    if controls / len(head) > MAX_CONTROL_SHARE:
        return f"binary file ({controls / len(head):.0%} control bytes in its first {len(head):,})"
    return None


def _nonblank(extracted: Extracted) -> Extracted:
    if not extracted.text.strip():
        return Extracted("", extracted.kind, extracted.language, "skipped", "no-text", "only whitespace")
    return extracted


class _ThreadWarnings(logging.Handler):
    """pypdf reports damage it worked around through logging; each reading thread collects its own."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.local = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        collected = getattr(self.local, "messages", None)
        if collected is not None:
            collected.append(record.getMessage())


_pdf_warnings = _ThreadWarnings()
_pypdf_logger = logging.getLogger("pypdf")
_pypdf_logger.addHandler(_pdf_warnings)
_pypdf_logger.propagate = False


def _pdf(data: bytes) -> Extracted:
    if b"%PDF-" not in data[:1024]:
        return Extracted("", "pdf", None, "skipped", "damaged", "not a PDF (no %PDF- header)")
    _pdf_warnings.local.messages = []
    try:
        return _read_pdf(data, _pdf_warnings.local.messages)
    finally:
        _pdf_warnings.local.messages = None


def _read_pdf(data: bytes, warnings: list[str]) -> Extracted:
    """The pages' text; `warnings` fills with what pypdf logged about damage it worked around."""
    from pypdf import PdfReader
    from pypdf.errors import DependencyError

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            try:
                unlocked = reader.decrypt("")
            except DependencyError as error:
                return Extracted("", "pdf", None, "skipped", "encrypted", f"encrypted PDF that cannot be opened ({error})")
            if not unlocked:
                return Extracted("", "pdf", None, "skipped", "encrypted", "encrypted PDF (needs a password)")
        pages = list(reader.pages)
    except Exception as error:  # pypdf raises many types for damaged files; each is a recorded reason
        return Extracted("", "pdf", None, "skipped", "damaged", f"damaged PDF: {_describe(error)}")
    texts, failed = [], []
    for number, page in enumerate(pages, start=1):
        try:
            texts.append((number, _clean(page.extract_text() or "")))
        except Exception as error:  # one bad page must not cost the others
            failed.append(f"page {number}: {_describe(error)}")
    text, spans = _join_pages([(n, t) for n, t in texts if t.strip()])
    if not text:
        reason = "; ".join(failed) if failed else f"no extractable text in {len(pages)} page(s) (scanned images?)"
        return Extracted("", "pdf", None, "skipped", "damaged" if failed else "no-text", reason)
    problems = failed + ([f"damaged PDF read anyway: {warnings[0]}"] if warnings else [])
    if problems:
        return Extracted(text, "pdf", None, "partial", "damaged", "; ".join(problems), pages=spans)
    return Extracted(text, "pdf", None, pages=spans)


def _join_pages(pages: list[tuple[int, str]]) -> tuple[str, list[tuple[int, int, int]]]:
    parts, spans, at = [], [], 0
    for i, (number, text) in enumerate(pages):
        if i:
            parts.append(PAGE_JOINER)
            at += len(PAGE_JOINER)
        parts.append(text)
        spans.append((number, at, at + len(text)))
        at += len(text)
    return "".join(parts), spans


def _clean(text: str) -> str:
    """PDF text can hold lone surrogates and NULs that no tokenizer takes; replace them."""
    if "\0" in text:
        text = text.replace("\0", " ")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def _describe(error: Exception) -> str:
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
