"""Uploads: a client's file name never becomes a path, and size and type are checked on the bytes."""

from __future__ import annotations

import re

import pytest

from app.uploads import Upload, refusal, safe_name, save_uploads

GENERATED = re.compile(r"^[0-9a-f]{8}-[A-Za-z0-9_-]+\.[a-z0-9]+$")


@pytest.mark.parametrize("client_name, stem, suffix", [
    ("../../etc/cron.d/evil.md", "evil", ".md"),
    ("..\\..\\Windows\\evil.txt", "evil", ".txt"),
    ("/root/.ssh/authorized_keys.md", "authorized_keys", ".md"),
    ("notes with spaces & $(rm -rf).MD", "notes-with-spaces-rm-rf", ".md"),
    ("....md", "upload", ".md"),
    ("résumé.pdf", "r-sum", ".pdf"),
])
def test_generated_names_keep_only_a_clean_stem_and_an_allowed_suffix(client_name, stem, suffix):
    name = safe_name(client_name)
    assert GENERATED.match(name), name
    assert name[9:] == stem + suffix
    assert "/" not in name and "\\" not in name and ".." not in name


@pytest.mark.parametrize("client_name", ["setup.exe", "archive.tar.gz", "noextension", ".md", "image.png", "../.."])
def test_names_of_unreadable_kinds_are_refused(client_name):
    assert safe_name(client_name) is None


def test_two_uploads_of_the_same_name_never_overwrite_each_other(tmp_path):
    source = tmp_path / "a.md"
    source.write_text("first")
    saved = save_uploads(tmp_path / "store", [Upload(source, "notes.md"), Upload(source, "notes.md")], 2**20)
    paths = [item.path for item in saved]
    assert all(path is not None and path.parent == tmp_path / "store" / "uploads" for path in paths)
    assert paths[0] != paths[1] and all(path.read_text() == "first" for path in paths)


def test_size_type_and_content_are_checked_on_the_received_bytes(tmp_path):
    big, fake_pdf, binary, fine = (tmp_path / name for name in ("big.md", "fake.pdf", "blob.txt", "fine.md"))
    big.write_bytes(b"x" * 2048)
    fake_pdf.write_bytes(b"<html>not a pdf</html>")
    binary.write_bytes(b"text\x00\x01\x02")
    fine.write_text("# Fine\n")
    assert "upload limit" in refusal(Upload(big, "big.md"), max_bytes=1024)
    assert "not a PDF" in refusal(Upload(fake_pdf, "fake.pdf"), max_bytes=1024)
    assert "binary" in refusal(Upload(binary, "blob.txt"), max_bytes=1024)
    assert "not a kind of file" in refusal(Upload(fine, "fine.exe"), max_bytes=1024)
    assert refusal(Upload(fine, "fine.md"), max_bytes=1024) is None


def test_refused_uploads_leave_nothing_behind(tmp_path):
    big = tmp_path / "big.md"
    big.write_bytes(b"x" * 4096)
    saved = save_uploads(tmp_path / "store", [Upload(big, "../big.md")], max_bytes=1024)
    assert saved[0].path is None and "upload limit" in saved[0].reason
    assert list((tmp_path / "store" / "uploads").iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.md", "store"]
