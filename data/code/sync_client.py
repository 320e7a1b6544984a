"""A tiny client that uploads notes to the home server, retrying with exponential backoff."""

from __future__ import annotations

import time
import urllib.request

SERVER = "http://192.168.1.40:8090/notes"
MAX_RETRIES = 7


def backoff_seconds(attempt: int) -> float:
    """Seconds to wait before retry number `attempt` (1-based): 0.5 s doubling, capped at 30 s."""
    return min(0.5 * 2 ** (attempt - 1), 30.0)


def fletcher16(data: bytes) -> int:
    """The Fletcher-16 checksum the server uses to check each upload."""
    low = high = 0
    for byte in data:
        low = (low + byte) % 255
        high = (high + low) % 255
    return (high << 8) | low


def upload(name: str, text: str) -> None:
    body = text.encode("utf-8")
    request = urllib.request.Request(f"{SERVER}/{name}", data=body, method="PUT",
                                     headers={"X-Checksum": str(fletcher16(body))})
    for attempt in range(1, MAX_RETRIES + 1):
        try:
            urllib.request.urlopen(request, timeout=10)
            return
        except OSError:
            time.sleep(backoff_seconds(attempt))
    raise RuntimeError(f"could not upload {name} after {MAX_RETRIES} attempts")
