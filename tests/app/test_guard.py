"""The chat's guard, request by request: the Host check, the token (URL, cookie, header), and that another
user of the machine, without the token, is refused by a real server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from app.guard import AllowedHosts, Guard, host_name
from app.server import ServeOptions, chosen_token

TOKEN = "a-test-token-nobody-else-knows"


def guarded_app(bound: str = "127.0.0.1", token: str | None = TOKEN) -> Starlette:
    async def hello(request):
        return PlainTextResponse("from the store")

    routes = [Route("/", hello), Route("/gradio_api/info", hello), Route("/gradio_api/upload", hello, methods=["POST"])]
    return Starlette(routes=routes, middleware=[Middleware(Guard, hosts=AllowedHosts.for_address(bound), token=token)])


def client(bound: str = "127.0.0.1", token: str | None = TOKEN) -> TestClient:
    return TestClient(guarded_app(bound, token), base_url="http://127.0.0.1:7860")


def test_without_the_token_nothing_is_served():
    web = client()
    for method, path in [("GET", "/"), ("GET", "/gradio_api/info"), ("POST", "/gradio_api/upload")]:
        response = web.request(method, path)
        assert response.status_code == 401 and "from the store" not in response.text
    assert web.get("/?token=wrong").status_code == 401
    assert web.get("/", headers={"Authorization": "token wrong"}).status_code == 401
    web.cookies.set("wholecorpus_token_7860", "wrong")
    assert web.get("/").status_code == 401


def test_the_token_in_the_url_sets_a_cookie_that_serves_the_rest_of_the_visit():
    web = client()
    first = web.get(f"/?token={TOKEN}")
    assert first.status_code == 200 and first.text == "from the store"
    cookie = first.headers["set-cookie"]
    assert cookie.startswith(f"wholecorpus_token_7860={TOKEN}") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert web.get("/gradio_api/info").status_code == 200  # the client kept the cookie
    assert web.post("/gradio_api/upload").status_code == 200


def test_an_api_client_sends_the_token_in_a_header():
    web = client()
    assert web.get("/gradio_api/info", headers={"Authorization": f"token {TOKEN}"}).status_code == 200
    assert web.get("/gradio_api/info", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:7860", "127.0.0.1.evil.example", "localhost.evil"])
def test_a_foreign_host_header_is_refused_even_with_the_token(host):
    response = client().get(f"/?token={TOKEN}", headers={"Host": host})
    assert response.status_code == 403 and "from the store" not in response.text
    assert client(token=None).get("/", headers={"Host": host}).status_code == 403  # also without a token


@pytest.mark.parametrize("host", ["127.0.0.1:7860", "localhost:7860", "LOCALHOST", "[::1]:7860", "127.0.0.1"])
def test_the_loopback_names_are_served(host):
    assert client().get(f"/?token={TOKEN}", headers={"Host": host}).status_code == 200


def test_bound_to_every_interface_an_ip_address_is_served_but_a_name_is_not():
    web = client(bound="0.0.0.0")
    assert web.get(f"/?token={TOKEN}", headers={"Host": "192.168.1.20:7860"}).status_code == 200
    assert web.get(f"/?token={TOKEN}", headers={"Host": "rebound.example"}).status_code == 403


def test_host_names_are_read_without_their_port():
    assert host_name("[::1]:7860") == "::1" and host_name("Example.ORG:80") == "example.org"
    assert host_name("::1") == "::1" and host_name("localhost") == "localhost"


def test_a_token_is_random_unless_a_login_guards_the_chat_or_the_user_opts_out(tmp_path):
    first, second = chosen_token(ServeOptions(tmp_path)), chosen_token(ServeOptions(tmp_path))
    assert first and second and first != second and len(first) >= 32
    assert chosen_token(ServeOptions(tmp_path, auth="alice:s3cret")) is None
    assert chosen_token(ServeOptions(tmp_path, no_token=True)) is None


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A real chat on a tiny model and an empty store, with a token: (url, store folder, an allowed root)."""
    pytest.importorskip("transformers")
    from app.server import start
    from tests.app.conftest import free_port
    from tests.engine.tiny_gguf import tiny_model_in

    folder = tmp_path_factory.mktemp("guarded-chat")
    with tiny_model_in(folder) as model:
        allowed = folder / "notes"
        allowed.mkdir()
        (allowed / "a.md").write_text("# A\n\nThe spare key is under the blue flowerpot.\n")
        page, url, corpus = start(ServeOptions(folder / "store", model=str(model), device="cpu", port=free_port(),
                                               token=TOKEN, roots=(allowed,)), block=False)
        try:
            yield url, folder / "store", allowed
        finally:
            page.close()
            corpus.close()


def test_a_real_chat_serves_nothing_without_the_token(served):
    url, _store, _allowed = served
    assert httpx.get(url, timeout=30).status_code == 401
    assert httpx.get(f"{url}config", timeout=30).status_code == 401
    assert httpx.get(f"{url}gradio_api/info", timeout=30).status_code == 401
    upload = httpx.post(f"{url}gradio_api/upload", files={"files": ("a.md", b"# a\n", "text/markdown")}, timeout=30)
    assert upload.status_code == 401
    join = httpx.post(f"{url}gradio_api/queue/join", timeout=30,
                      json={"data": ["/etc"], "fn_index": 0, "session_hash": "x"})
    assert join.status_code == 401
    assert httpx.get(f"{url}?token={TOKEN}", headers={"Host": "evil.example"}, timeout=30).status_code == 403
    page = httpx.get(f"{url}?token={TOKEN}", timeout=30)
    assert page.status_code == 200 and "wholecorpus" in page.text


def test_with_the_token_a_folder_outside_the_allowed_roots_is_refused(served, tmp_path):
    from gradio_client import Client

    url, store, allowed = served
    chat = Client(url, headers={"Authorization": f"token {TOKEN}"}, verbose=False)
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "secret.md").write_text("# Secret\n\nThe vault code is 4711.\n")
    status = chat.predict(str(outside), api_name="/add_folder")[0]
    assert "outside the folders this chat may read" in status
    status = chat.predict(str(allowed / ".." / "notes" / ".." / ".." / outside.name), api_name="/add_folder")[0]
    assert "outside" in status
    status = chat.predict(str(allowed), api_name="/add_folder")[0]
    assert "Added 1" in status
    assert oct(store.stat().st_mode & 0o777) == "0o700"
    assert oct((store / "catalog.db").stat().st_mode & 0o777) == "0o600"


OTHER_USER = textwrap.dedent("""
    import sys, urllib.request, urllib.error
    url = sys.argv[1]
    codes = []
    for path in ("", "config", "gradio_api/info"):
        try:
            codes.append(urllib.request.urlopen(url + path, timeout=30).status)
        except urllib.error.HTTPError as error:
            codes.append(error.code)
    print(*codes)
""")


def test_another_user_of_the_machine_cannot_use_the_chat(served):
    if os.geteuid() != 0:
        pytest.skip("switching to another uid needs root")
    url, _store, _allowed = served
    # The script needs only the standard library: any Python the other user may run will do (a venv under
    # root's own folders often is not one).
    for python in dict.fromkeys([sys.executable, shutil.which("python3") or sys.executable, "/usr/bin/python3"]):
        try:
            result = subprocess.run([python, "-I", "-c", OTHER_USER, url], capture_output=True, text=True,
                                    timeout=120, user=65534, group=65534, extra_groups=[], cwd="/")
        except OSError:
            continue
        break
    else:
        pytest.skip("no Python here that uid 65534 may run")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["401", "401", "401"]
