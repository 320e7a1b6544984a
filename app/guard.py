"""Who may use the chat: the person who started it, as with Jupyter, not every user of the machine.

Every request (the page, the API, file routes, uploads, the event stream) passes through `Guard`, an ASGI
middleware in front of Gradio's own routes:

- The Host header must name the address the server is bound to, `localhost`, `127.0.0.1` or `[::1]`
  (and, bound to every interface, any IP address or this machine's name). A web page on another site
  that re-points its own domain at 127.0.0.1 (DNS rebinding) sends its own domain as Host: refused.
- Unless the user logs in with `--auth` or opts out with `--no-token`, a random token must come with every
  request: in the URL once (`?token=...`, the link `engine chat` prints), which sets an HttpOnly,
  SameSite=Strict cookie for the rest of the visit; or as `Authorization: token ...` (or `Bearer`) for
  API clients. Another local user can reach the port but cannot read the token: it is printed to the
  terminal of the user who started the chat and lives in that process only.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qs

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_ADDRESSES = frozenset({"", "0.0.0.0", "::"})
COOKIE = "wholecorpus_token"
# Gradio's launch calls this route of its own server, without the token, to run its start-up once; it
# returns only `true` and does nothing a second time.
OPEN_PATHS = frozenset({"/gradio_api/startup-events"})


def new_token() -> str:
    return secrets.token_urlsafe(32)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def host_name(header: str) -> str:
    """The name in a Host header, without its port: `[::1]:7860` -> `::1`, `Example.org:80` -> `example.org`."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


@dataclass(frozen=True)
class AllowedHosts:
    """The Host names the server answers to, for a server bound to `bound`."""

    bound: str
    names: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def for_address(cls, bound: str) -> AllowedHosts:
        bound = bound.lower().strip("[]")
        names = set(LOOPBACK_NAMES) | {bound}
        if bound in WILDCARD_ADDRESSES:
            names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
        return cls(bound, frozenset(names))

    def allows(self, header: str | None) -> bool:
        if not header:
            return False
        name = host_name(header)
        # An IP address cannot be rebound: when serving on every interface, any of the machine's addresses
        # may be typed in the address bar.
        return name in self.names or (self.bound in WILDCARD_ADDRESSES and _is_ip(name))


class Guard:
    """ASGI middleware: a Host check on every request, and the token check when `token` is set."""

    def __init__(self, app, hosts: AllowedHosts, token: str | None):
        self.app, self.hosts, self.token = app, hosts, token

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        if not self.hosts.allows(headers.get("host")):
            await _refuse(scope, receive, send, 403, "this server answers only to its own address (Host refused)")
            return
        if self.token is None or (scope["type"] == "http" and scope["method"] == "GET" and scope["path"] in OPEN_PATHS):
            await self.app(scope, receive, send)
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [])
        if query and self._matches(query[0]):
            await self.app(scope, receive, self._setting_cookie(send, scope))
            return
        if self._matches(_header_token(headers.get("authorization", ""))) or \
                self._matches(_cookie(headers.get("cookie", ""), _cookie_name(scope))):
            await self.app(scope, receive, send)
            return
        await _refuse(scope, receive, send, 401, "a token is needed: open the link `engine chat` printed")

    def _matches(self, candidate: str | None) -> bool:
        return bool(candidate) and secrets.compare_digest(candidate.encode(), self.token.encode())

    def _setting_cookie(self, send, scope):
        """`send`, with the token's cookie added to the response: the page's own requests carry it after."""
        cookie = f"{_cookie_name(scope)}={self.token}; Path=/; HttpOnly; SameSite=Strict".encode("latin-1")

        async def sending(message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie)]}
            await send(message)
        return sending


def _cookie_name(scope) -> str:
    """One cookie per port: cookies ignore ports, and two chats on one machine must not overwrite each other's."""
    server = scope.get("server") or ("", 0)
    return f"{COOKIE}_{server[1]}"


def _header_token(value: str) -> str | None:
    scheme, _, credential = value.partition(" ")
    return credential.strip() if scheme.lower() in ("token", "bearer") else None


def _cookie(header: str, name: str) -> str | None:
    jar = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:  # a malformed Cookie header carries no token
        return None
    return jar[name].value if name in jar else None


async def _refuse(scope, receive, send, status: int, text: str) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    body = (text + "\n").encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
