"""Extraction: encodings, dates, kinds, and PDFs written here (pages, encrypted, damaged) plus the real one in data/."""

from __future__ import annotations

import os
import random
import re

import pytest

from ingest.extract import extract, kind_of
from tests.ingest.conftest import REPO
from tests.ingest.pdfs import encrypt_pdf, make_pdf


def test_utf8_text_is_read_as_is():
    result = extract("notes/plain.txt", "naïve café\nsecond line\n".encode())
    assert (result.status, result.reason, result.text) == ("ok", None, "naïve café\nsecond line\n")


def test_utf8_with_bom_and_utf16_are_decoded():
    assert extract("a.txt", b"\xef\xbb\xbfhello").text == "hello"
    assert extract("b.txt", "grüße".encode("utf-16")).text == "grüße"


def test_latin1_text_is_read_with_a_recorded_reason():
    result = extract("old.txt", "Crème brûlée, 3 €".encode("cp1252"))
    assert result.status == "partial" and result.reason_code == "encoding"
    assert "invalid UTF-8" in result.reason and "offset 2" in result.reason
    assert result.text == "Crème brûlée, 3 €"
    latin1_only = extract("older.txt", b"caf\xe9 \x81")  # 0x81 is undefined in cp1252
    assert latin1_only.text == "café \x81" and "Latin-1" in latin1_only.reason


@pytest.mark.parametrize("data, code", [(b"", "empty"), (b"  \n\t\n", "no-text"), (b"ELF\0\0\1binary", "binary")])
def test_empty_blank_and_binary_files_are_skipped_with_reasons(data, code):
    result = extract("thing.txt", data)
    assert result.status == "skipped" and result.reason_code == code and result.reason


def test_kinds_and_languages_come_from_the_name():
    assert kind_of("x/README.md") == ("markdown", None)
    assert kind_of("x/guide.rst") == ("rst", None)
    assert kind_of("x/main.rs") == ("code", "rust")
    assert kind_of("x/Makefile") == ("code", "make")
    assert kind_of("x/paper.PDF") == ("pdf", None)
    assert kind_of("x/notes") == ("text", None)


def test_dates_from_front_matter_win_over_the_file_name():
    result = extract("journal/2024-03-14.md", b"---\ndate: 2023-12-01\n---\n# Day\n")
    assert result.date == "2023-12-01"  # the text's own date
    assert extract("journal/2024-03-14.md", b"# Day\n").date is None  # a name's date belongs to the path
    assert extract("j.md", b"---\ndate: 2024-02-30\n---\nx\n").date is None  # not a real day


def test_pdf_pages_keep_their_numbers():
    data = make_pdf([["Page one, line one", "Page one, line two"], ["Page two says hello"], ["Third page"]])
    result = extract("doc.pdf", data)
    assert result.status == "ok" and result.kind == "pdf"
    assert [number for number, _, _ in result.pages] == [1, 2, 3]
    texts = [result.text[start:end] for _, start, end in result.pages]
    assert texts == ["Page one, line one\nPage one, line two", "Page two says hello", "Third page"]


def test_blank_pages_are_left_out_but_numbering_is_kept():
    result = extract("doc.pdf", make_pdf([["first"], [], ["third"]]))
    assert [(n, result.text[s:e]) for n, s, e in result.pages] == [(1, "first"), (3, "third")]


def test_encrypted_pdf_is_skipped_unless_the_password_is_empty():
    data = make_pdf([["secret plans"]])
    locked = extract("locked.pdf", encrypt_pdf(data, "hunter2"))
    assert locked.status == "skipped" and locked.reason_code == "encrypted" and "password" in locked.reason
    opened = extract("open.pdf", encrypt_pdf(data, ""))
    assert opened.status == "ok" and opened.text == "secret plans"


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_truncated_pdf_is_recorded_as_damaged(cut):
    data = make_pdf([["alpha " * 20] * 30, ["beta " * 20] * 30])
    result = extract("cut.pdf", data[: int(len(data) * cut)])
    assert result.reason_code == "damaged" and result.reason
    assert result.status in {"skipped", "partial"}


def test_pdf_damage_that_pypdf_works_around_is_read_with_a_reason():
    data = make_pdf([["hello one"], ["hello two"]])
    broken = re.sub(rb"startxref\n\d+", b"startxref\n99", data)
    result = extract("pointer.pdf", broken)
    assert result.status == "partial" and result.reason_code == "damaged" and "startxref" in result.reason
    assert result.text == "hello one\n\nhello two"


def test_random_bytes_named_pdf_are_recorded_as_damaged():
    result = extract("noise.pdf", os.urandom(4096))
    assert result.status == "skipped" and result.reason_code == "damaged"


def test_the_real_pdf_in_data():
    result = extract("data/heat-pump-manual.pdf", (REPO / "data" / "heat-pump-manual.pdf").read_bytes())
    assert result.status == "ok" and [n for n, _, _ in result.pages] == [1, 2]
    first, second = (result.text[s:e] for _, s, e in result.pages)
    assert "Clean the indoor water filter every 90 days" in first
    assert "E17: the outdoor fan is blocked" in second


def test_random_bytes_without_a_nul_are_skipped_as_binary_with_a_reason():
    noise = bytes(byte for byte in random.Random(7).randbytes(12_000) if byte)[:8_000]
    assert b"\0" not in noise
    result = extract("module.py", noise)
    assert result.status == "skipped" and result.reason_code == "binary" and result.text == ""
    assert "control bytes" in result.reason


def test_text_with_a_few_control_characters_is_still_text():
    text = "def f():\n\treturn 1\n\f\n# section two\x1b[1m bold\x1b[0m\n" + "x = 'naïve café'\n" * 40 + "\x07 bell\n"
    result = extract("module.py", text.encode("utf-8"))
    assert result.status == "ok" and result.text == text
