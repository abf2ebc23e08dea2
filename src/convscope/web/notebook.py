"""The web app inside a notebook: ``convscope.show_app(model)`` starts it in a background thread
on 127.0.0.1 and a free port and returns a :class:`NotebookApp`, whose HTML is an ``<iframe>``.

Plain HTML output is what every front end shows: classic Jupyter, JupyterLab, VS Code, nbconvert.
No nbextension, no widget, no JavaScript in the output: Captum Insights needed a classic-notebook
widget and broke everywhere else. The iframe loads the page from the kernel's machine, so the
browser must reach 127.0.0.1 there: a local notebook, or VS Code's port forwarding for a remote
kernel (a link under the frame opens the same page in a tab).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from html import escape
from pathlib import Path
from types import TracebackType

from ..errors import BadArgument
from ..model import DEFAULT_MODEL, Model
from .app import create_app
from .config import NOTEBOOK_FRAMERS, ServeConfig, default_cache_dir
from .server import RunningServer, start_in_thread


class NotebookApp(AbstractContextManager["NotebookApp"]):
    """The app running in this process. Shown in a notebook it is the app in a frame; ``url`` is
    its address, ``stop()`` shuts it down and frees the port (also at the end of a ``with``)."""

    def __init__(self, server: RunningServer, page: str, height: int) -> None:
        self._server = server
        self.url = server.url.rstrip("/") + page
        self.height = height
        self.running = True

    def stop(self) -> None:
        """Shut the server down (its jobs are cancelled); the models are left as they were."""
        if self.running:
            self._server.stop()
            self.running = False

    def _repr_html_(self) -> str:
        if not self.running:
            return f"<p>convscope app at {escape(self.url)} (stopped)</p>"
        url = escape(self.url, quote=True)
        return (f'<iframe src="{url}" title="convscope" width="100%" height="{self.height}" '
                'style="border:1px solid #ddd;border-radius:4px"></iframe>'
                f'<div style="font-size:12px;color:#666">convscope app at <a href="{url}" '
                f'target="_blank" rel="noopener">{escape(self.url)}</a></div>')

    def __repr__(self) -> str:
        return f"<convscope app at {self.url} ({'running' if self.running else 'stopped'})>"

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()


def show_app(
    model: Model | str | Sequence[Model | str] | None = None,
    images: str | Path | Sequence[str | Path] = (),
    atlases: str | Path | Sequence[str | Path] = (),
    *,
    page: str = "/",
    height: int = 720,
    port: int = 0,
    cache_dir: str | Path | None = None,
    device: str = "auto",
) -> NotebookApp:
    """Start the web app for ``model`` (a loaded :class:`~convscope.Model`, a ``--model`` spec,
    or a list of them; default the embedded model) with the image folders ``images`` and the
    atlas folders ``atlases``, and return it; as the last line of a cell it shows ``page`` in a
    frame ``height`` pixels high.

    A model object is served as it is (its device and weights untouched); specs are loaded on
    ``device``. The server listens on 127.0.0.1 only, on ``port`` (0: a free one).
    """
    if height < 100:
        raise BadArgument(f"height={height}: give the frame at least 100 pixels")
    if not page.startswith("/"):
        raise BadArgument(f"page={page!r}: give a path of the app, such as '/' or '/explain'")
    given = [model] if model is None or isinstance(model, (Model, str)) else list(model)
    if not given:
        raise BadArgument("model=[]: give a model, a model spec, or None for the default model")
    specs = [m.name if isinstance(m, Model) else (m or DEFAULT_MODEL) for m in given]
    config = ServeConfig(models=specs, images=_folders(images), atlases=_folders(atlases),
                         port=port, device=device, frame_ancestors=NOTEBOOK_FRAMERS,
                         cache_dir=Path(cache_dir) if cache_dir is not None else default_cache_dir())
    app = create_app(config, models=[(s, m if isinstance(m, Model) else None) for s, m in zip(specs, given)])
    try:
        server = start_in_thread(app, config.host, port)
    except BaseException:
        app.state.cs.close()
        raise
    return NotebookApp(server, page, height)


def _folders(value: str | Path | Sequence[str | Path]) -> list[Path]:
    return [Path(value)] if isinstance(value, (str, Path)) else [Path(v) for v in value]
