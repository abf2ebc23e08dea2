"""Run the app: in the foreground (``convscope serve``) or in a background thread (notebooks, tests)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from ..errors import BadArgument
from .config import ServeConfig


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one), with a clear error when taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say so, and without it
    # every response waited ~40 ms for the client's delayed ACK (Nagle)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise BadArgument(f"--port {port}: cannot listen on {host}:{port} ({err.strerror}); "
                          "choose another port (0 picks a free one)") from err
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _server(app: FastAPI) -> uvicorn.Server:
    return uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                                         timeout_graceful_shutdown=2))


def serve_forever(app: FastAPI, config: ServeConfig, announce: Callable[[str], None] | None = None) -> None:
    """Bind, call ``announce(url)`` (the real port when it was 0), then serve until Ctrl+C."""
    sock = bind(config.host, config.port)
    config.port = sock.getsockname()[1]
    if announce is not None:
        announce(config.url)
    _server(app).run(sockets=[sock])


@dataclass
class RunningServer:
    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def start_in_thread(app: FastAPI, host: str = "127.0.0.1", port: int = 0, *, timeout: float = 30.0
                    ) -> RunningServer:
    """Start ``app`` on ``host:port`` in a daemon thread; return once it accepts connections."""
    sock = bind(host, port)
    port = sock.getsockname()[1]
    server = _server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                              name=f"convscope-serve-{port}")
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the convscope server on {host}:{port} did not start")
        time.sleep(0.02)
    return RunningServer(f"http://{host}:{port}/", server, thread)
