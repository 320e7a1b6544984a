"""Uploads: a client's file name never becomes a path (only a clean file name, the user's own where it can), a name
taken is never overwritten, and size and type are checked on the bytes."""

from __future__ import annotations

import pytest

from app.uploads import Upload, refusal, safe_name, save_uploads


@pytest.mark.parametrize("client_name, kept", [
    ("../../etc/cron.d/evil.md", "evil.md"),
    ("..\\..\\Windows\\evil.txt", "evil.txt"),
    ("/root/.ssh/authorized_keys.md", "authorized_keys.md"),
    ("notes with spaces & $(rm -rf).MD", "notes with spaces - -(rm -rf).md"),
    ("....md", "upload.md"),
    ("..hidden...md", "hidden.md"),
    ("résumé.pdf", "résumé.pdf"),
    ("Kettle manual (2019).pdf", "Kettle manual (2019).pdf"),
])
def test_an_upload_keeps_its_own_name_cleaned_to_a_plain_file_name(client_name, kept):
    name = safe_name(client_name)
    assert name == kept
    assert "/" not in name and "\\" not in name and ".." not in name and not name.startswith(".")


@pytest.mark.parametrize("client_name", ["setup.exe", "archive.tar.gz", "noextension", ".md", "image.png", "../.."])
def test_names_of_unreadable_kinds_are_refused(client_name):
    assert safe_name(client_name) is None


def test_two_uploads_of_the_same_name_never_overwrite_each_other(tmp_path):
    first, second = tmp_path / "a.md", tmp_path / "b.md"
    first.write_text("first")
    second.write_text("second")
    saved = save_uploads(tmp_path / "store", [Upload(first, "notes.md"), Upload(second, "notes.md")], 2**20)
    folder = tmp_path / "store" / "uploads"
    assert [item.path for item in saved] == [folder / "notes.md", folder / "notes (2).md"]
    assert [item.path.read_text() for item in saved] == ["first", "second"]
    assert sorted(path.name for path in folder.iterdir()) == ["notes (2).md", "notes.md"]  # no partial left


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
