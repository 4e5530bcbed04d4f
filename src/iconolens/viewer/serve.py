"""Serve a built viewer on this machine only (127.0.0.1), for browsers or colleagues on an SSH tunnel."""

from __future__ import annotations

import functools
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from iconolens.errors import BadInputError


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # one line per request would drown the console
        pass


def viewer_server(folder: str | Path, port: int = 8765) -> ThreadingHTTPServer:
    """A server of ``folder`` bound to 127.0.0.1:``port`` (0 picks a free port); call ``serve_forever``."""
    folder = Path(folder)
    if not (folder / "index.html").is_file():
        raise BadInputError("no viewer here (index.html is missing): build it with `iconolens view` first", folder)
    handler = functools.partial(_QuietHandler, directory=str(folder))
    try:
        return ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as exc:
        raise BadInputError(f"cannot listen on 127.0.0.1:{port} ({exc.strerror or exc}); choose another --port",
                            folder) from None
