"""The chat's login, read where no other user of the machine can see it.

A login's password never comes from the command line: every user of the machine can read another's
command line (`ps`, /proc/PID/cmdline), so `--auth USER:PASS` would publish it. `--auth` reads USER:PASS
from `$ENGINE_CHAT_AUTH` (a process's environment is readable by its own user only) or `--auth-file`,
a file that must not be readable by group or others (as ssh requires of a private key). An old-style
`--auth USER:PASS` is refused, not merely warned about: by the time a warning is read the password has
been on show, and a chat that starts anyway teaches that it is fine.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from engine import UsageError

AUTH_VARIABLE = "ENGINE_CHAT_AUTH"


def read_auth(given: str | None, path: Path | None) -> str | None:
    """USER:PASS from `path` (private to this user) or $ENGINE_CHAT_AUTH; None when no login is asked for.
    `given` is what followed --auth: nothing ("") or, refused, a login typed on the command line."""
    if given:
        raise UsageError(f"--auth takes no value: a password on the command line is visible to every user of this "
                         f"machine; put USER:PASS in ${AUTH_VARIABLE} or in a file only you can read (--auth-file)")
    if path is not None:
        try:
            mode = path.stat().st_mode
            text = path.read_text().strip()
        except OSError as error:
            raise UsageError(f"--auth-file {path}: {error.strerror or error}") from error
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise UsageError(f"--auth-file {path} is readable by other users: `chmod 600 {path}` first")
        return text
    if given is None:
        return None
    text = os.environ.get(AUTH_VARIABLE)
    if not text:
        raise UsageError(f"--auth reads USER:PASS from --auth-file FILE or ${AUTH_VARIABLE} (never the command "
                         f"line, where every user of this machine can read it)")
    return text
