"""``MockXero``: the operations of :class:`mockxero.core.MockCore`, the
Flask app that serves them, and the HTTPS listener, with ``start``/``stop``,
``port`` and ``url``."""

from __future__ import annotations

import threading
from typing import Any

from .app import create_app
from .core import MockCore
from .settings import Settings
from .tls import HTTPSServer, make_context


class MockXero(MockCore):
    """A mock Xero partner API.

    ``MockXero(port=0, certs=tmpdir).start()`` serves HTTPS on a free port in
    a background thread; ``stop()`` (or leaving a ``with`` block) closes it.
    Without ``start()`` the Flask app (``.app``) can be mounted elsewhere.
    Every control operation is a method (see :class:`mockxero.Operations`).
    """

    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        super().__init__(settings, **overrides)
        self.app = create_app(self)
        self._server: HTTPSServer | None = None
        self._lifecycle = threading.Lock()

    def start(self) -> MockXero:
        with self._lifecycle:
            if self._server is not None:
                raise RuntimeError("this mock is already serving")
            context = make_context(self.certs.path("server.pem"), self.certs.path("server-key.pem"),
                                   self.certs.path("entrust-ca.pem"))
            s = self.settings
            server = HTTPSServer(self.app, context, s.host, s.port, threads=s.threads,
                                 timeout=s.socket_timeout, handshake_timeout=s.handshake_timeout,
                                 max_request_line=s.max_request_line, max_header_bytes=s.max_header_bytes,
                                 max_header_count=s.max_header_count, header_timeout=s.header_timeout)
            server.start()
            self._server = server
        return self

    def stop(self) -> None:
        with self._lifecycle:
            if self._server is not None:
                self._server.stop()
                self._server = None

    def __enter__(self) -> MockXero:
        if self._server is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving and let go of the state file, if any."""
        self.stop()
        super().close()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the mock is not serving; call start()")
        return self._server.port

    @property
    def url(self) -> str:
        """The base URL clients use (``api_url`` for pyxero)."""
        host = self.settings.host
        if host in ("0.0.0.0", "::", ""):
            host = "localhost"
        elif ":" in host:
            host = f"[{host}]"
        return f"https://{host}:{self.port}"
