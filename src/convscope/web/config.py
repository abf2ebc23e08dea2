"""What ``convscope serve`` was started with: models, folders, address and limits."""

from __future__ import annotations

import os
import secrets
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BadArgument
from ..model import DEFAULT_MODEL

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
WILDCARD = {"0.0.0.0", "::", ""}
SELF_ONLY = ("'self'",)
NOTEBOOK_FRAMERS = ("'self'", "http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*",
                    "https://localhost:*", "https://127.0.0.1:*", "vscode-webview:", "https://*.vscode-cdn.net")
"""Who may show the app in a frame: only its own pages, or (``show_app``) a notebook front end
on this machine (Jupyter, JupyterLab, VS Code's webviews)."""


def default_cache_dir() -> Path:
    """``$CONVSCOPE_CACHE``, else ``$XDG_CACHE_HOME/convscope/web``, else ``~/.cache/...``."""
    if os.environ.get("CONVSCOPE_CACHE"):
        return Path(os.environ["CONVSCOPE_CACHE"])
    try:
        base = os.environ.get("XDG_CACHE_HOME") or (Path.home() / ".cache")
    except RuntimeError:  # no home directory (Path.home() cannot tell)
        return Path(tempfile.gettempdir()) / "convscope-web"
    return Path(base) / "convscope" / "web"


@dataclass
class ServeConfig:
    """Everything the app needs to start; the CLI builds one from its options."""

    models: list[str] = field(default_factory=lambda: [DEFAULT_MODEL])
    """Model specs as ``--model`` takes them; the first is the default model of every page."""
    images: list[Path] = field(default_factory=list)
    """Folders whose images can be chosen (and nothing outside them is read)."""
    atlases: list[Path] = field(default_factory=list)
    """Atlas folders written by ``convscope scan``."""
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    """Required on every request when set (always set when the host is not loopback)."""
    cache_dir: Path = field(default_factory=default_cache_dir)
    max_upload_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_job_bytes: int = 8 * 2**30
    """The peak memory one job may plan to use (``web.params.check_memory`` estimates it)."""
    device: str = "auto"
    model_options: dict[str, object] = field(default_factory=dict)
    """Extra ``load_model`` keywords for every spec (weights, preprocess, labels, ...)."""
    frame_ancestors: tuple[str, ...] = SELF_ONLY

    def __post_init__(self) -> None:
        self.images = [Path(p) for p in self.images]
        self.atlases = [Path(p) for p in self.atlases]
        self.cache_dir = Path(self.cache_dir)
        if not self.models:
            raise BadArgument("serve needs at least one --model")
        for kind, folders in (("--images", self.images), ("--atlas", self.atlases)):
            for folder in folders:
                if not folder.is_dir():
                    raise BadArgument(f"{kind} {str(folder)!r} is not a folder; give an existing folder")
        if self.max_upload_bytes < 1:
            raise BadArgument("max_upload_bytes must be positive")

    def secure(self, *, allow_remote: bool) -> ServeConfig:
        """Check the address: another host needs ``allow_remote`` and then gets a random token."""
        if self.host not in LOOPBACK:
            if not allow_remote:
                raise BadArgument(f"--host {self.host!r} would expose the app beyond this machine; "
                                  "add --allow-remote to do it on purpose (a random token is then required)")
            if not self.token:
                self.token = secrets.token_urlsafe(24)
        return self

    @property
    def allowed_hosts(self) -> set[str] | None:
        """The names a request's ``Host`` may carry (DNS rebinding gets a 4xx); ``None`` (any)
        with a token, which a rebinding page does not have."""
        if self.token or self.host in WILDCARD:
            return None
        return LOOPBACK if self.host in LOOPBACK else {self.host}

    @property
    def url(self) -> str:
        """The address to print: one that can be opened (a wildcard bind names this machine)."""
        host = public_address() if self.host in WILDCARD else self.host
        host = f"[{host}]" if ":" in host else host
        base = f"http://{host}:{self.port}/"
        return f"{base}?token={self.token}" if self.token else base


def public_address() -> str:
    """This machine's address on its default route (no packet is sent), else its host name."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed anywhere real
            return str(probe.getsockname()[0])
        except OSError:
            return socket.gethostname()
