"""The app over HTTP against a running server. Safety: uploads cannot escape the store or
exceed the limit, `--auth` serves nothing without a login, and two conversations at once never mix."""

from __future__ import annotations

import threading

import httpx
import pytest
from gradio_client import Client

from tests.app.conftest import AUTH, serving


def upload_raw(url: str, name: str, data: bytes, **kwargs) -> httpx.Response:
    """A multipart upload with exactly the file name given: a browser could send any."""
    kwargs.setdefault("headers", AUTH)
    return httpx.post(f"{url}gradio_api/upload", files={"files": (name, data, "text/markdown")}, timeout=60, **kwargs)


@pytest.fixture(scope="module")
def server(sample_store, tmp_path_factory):
    with serving(sample_store, tmp_path_factory.mktemp("safety"), max_upload_mb=0.05) as served:
        yield served


def test_an_upload_named_with_a_path_is_kept_inside_the_store_under_its_own_file_name(server, tmp_path):
    url, corpus, root = server
    response = upload_raw(url, "../../../../escape.md", b"# Escape\n\nThe canoe paddles hang in the boathouse.\n")
    assert response.status_code == 200, response.text
    received = response.json()
    assert all(path.endswith("escape.md") for path in received)  # where Gradio keeps it, outside the store
    files = [{"path": path, "meta": {"_type": "gradio.FileData"}} for path in received]
    status = Client(url, headers=AUTH, verbose=False).predict(files, api_name="/add_uploads")[1]
    assert list((root / "uploads").iterdir()) == [root / "uploads" / "escape.md"]
    assert (root / "uploads" / "escape.md").read_text().startswith("# Escape")
    assert list(root.parent.rglob("escape.md")) == [root / "uploads" / "escape.md"]  # nothing escaped the store
    assert "Added 1" in status
    assert "escape.md" in [row["name"] for row in corpus.documents()]  # the name the user sees


def test_an_upload_over_the_limit_is_refused_before_it_is_kept(server):
    url, _corpus, root = server
    before = sorted(path.name for path in (root / "uploads").glob("*")) if (root / "uploads").exists() else []
    response = upload_raw(url, "big.md", b"x" * 200_000)
    assert response.status_code == 413
    after = sorted(path.name for path in (root / "uploads").glob("*")) if (root / "uploads").exists() else []
    assert after == before


def test_two_conversations_at_once_each_get_their_own_answer_and_sources(server):
    url, _corpus, _root = server
    questions = {"dentist": ("When is my dentist appointment?", "todo.txt"),
                 "retries": ("How many times does the sync client try an upload before giving up?", "sync_client.py")}
    results: dict[str, tuple] = {}

    def converse(key: str) -> None:
        client = Client(url, headers=AUTH, verbose=False)  # a session of its own, like a browser tab
        results[key] = client.predict(questions[key][0], [], 4, 0.0, api_name="/ask")

    threads = [threading.Thread(target=converse, args=(key,)) for key in questions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    for key, (question, source_file) in questions.items():
        history, _question_box, sources, *_ = results[key]
        said = [part["text"] for message in history if message["role"] == "user" for part in message["content"]]
        assert said == [question]
        assert source_file in sources
        other = next(q for k, (q, _) in questions.items() if k != key)
        assert other not in str(history)


@pytest.fixture(scope="module")
def guarded(sample_store, tmp_path_factory):
    with serving(sample_store, tmp_path_factory.mktemp("auth"), auth="alice:s3cret") as served:
        yield served


def test_with_auth_nothing_is_served_without_a_login(guarded):
    url, _corpus, root = guarded
    assert httpx.get(f"{url}config", timeout=30).status_code == 401
    assert httpx.get(f"{url}gradio_api/info", timeout=30).status_code == 401
    assert upload_raw(url, "notes.md", b"# notes\n", headers={}).status_code == 401
    join = httpx.post(f"{url}gradio_api/queue/join", timeout=30,
                      json={"data": ["When is my dentist appointment?", [], 4, 0.0], "fn_index": 0, "session_hash": "x"})
    assert join.status_code == 401
    assert not (root / "uploads").exists()
    # The login page itself is served; it carries no component of the app and nothing from the store.
    # (Gradio 6.31 does embed the API's schema in it: endpoint names and labels, no data.)
    page = httpx.get(url, timeout=30).text
    assert '"auth_required":true' in page and '"components":[]' in page
    assert "todo.txt" not in page and "Dentist" not in page and str(root) not in page
    with pytest.raises(Exception):  # noqa: B017 (gradio_client's error for a refused login is not public API)
        Client(url, verbose=False)
    with pytest.raises(Exception):  # noqa: B017
        Client(url, auth=("alice", "wrong"), verbose=False)


def test_with_auth_the_right_login_is_served(guarded):
    url, _corpus, _root = guarded
    client = Client(url, auth=("alice", "s3cret"), verbose=False)
    assert "/ask" in client.view_api(return_format="dict", print_info=False)["named_endpoints"]


def test_the_selftest_page_reports_accuracy_by_length_for_engine_and_full_attention(server):
    url, _corpus, _root = server
    table, plot = Client(url, headers=AUTH, verbose=False).predict(["1k"], 1, api_name="/selftest")
    assert table["headers"] == ["tokens", "trials", "engine", "needle retrieved", "full attention"]
    assert [row[:2] for row in table["data"]] == [[1024, 1]]
    engine, retrieved, full = table["data"][0][2:]
    assert engine in ("0%", "100%") and full in ("0%", "100%")  # one trial: it passed or it did not
    assert retrieved == "100%"  # a 1k haystack is a handful of blocks: the needle's is always among those read
    assert plot["columns"] == ["tokens", "accuracy", "method"]
    assert sorted(plot["data"]) == sorted([[1024, float(engine == "100%"), "engine"],
                                           [1024, float(full == "100%"), "full attention"]])
