"""Lifecycle shared by the fake cloud servers: serve an http.server-style server on 127.0.0.1 in a daemon
thread, stop it (shutdown + close the socket), context-manager use and the endpoint URL."""

from __future__ import annotations

import threading
from typing import Any, Self


class ServedFake:
    """Mixin for a fake cloud: subclasses build their server in `start()` and hand it to `_serve()`."""

    _server: Any = None
    _thread: threading.Thread | None = None

    def start(self) -> Self:
        """Start serving (subclasses build the server and call `_serve`)."""
        raise NotImplementedError

    def _serve(self, server: Any, name: str) -> None:
        """Run `server.serve_forever()` in a daemon thread named `name`."""
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and release the port (idempotent)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        """http://127.0.0.1:PORT"""
        assert self._server is not None, "call start() first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"
