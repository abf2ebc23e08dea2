"""``convscope serve``: the local web app for the given models, image folders and atlases."""

from __future__ import annotations

import argparse
import sys

from ..model import DEFAULT_MODEL
from .common import add_model_options, model_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="open the local web app (model, layers, units, explainer, atlases, lab)",
                       description="Start the convscope web app on this machine and print its address. "
                                   "It binds 127.0.0.1 unless --host and --allow-remote say otherwise.")
    add_model_options(p, several=True)
    p.add_argument("--images", action="append", default=[], metavar="DIR",
                   help="a folder of images to choose from (repeatable; nothing outside is served)")
    p.add_argument("--atlas", action="append", default=[], metavar="DIR",
                   help="an atlas folder written by `convscope scan` (repeatable)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow a --host other than loopback; a random access token is then required")
    p.add_argument("--cache", metavar="DIR", help="where results are cached (default ~/.cache/convscope/web)")
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="upload size limit in MB (default 20)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..web.app import create_app  # FastAPI is imported only by this command
    from ..web.config import ServeConfig
    from ..web.server import serve_forever

    specs = args.model or [DEFAULT_MODEL]
    config = ServeConfig(models=specs, images=args.images, atlases=args.atlas, host=args.host, port=args.port,
                         max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), device=args.device,
                         **({"cache_dir": args.cache} if args.cache else {}))
    config.secure(allow_remote=args.allow_remote)
    models = [(spec, model_from_args(argparse.Namespace(**{**vars(args), "model": spec}))) for spec in specs]
    app = create_app(config, models=models)
    serve_forever(app, config, announce=lambda url: print(f"convscope serve: {url}  (Ctrl+C stops it)",
                                                          file=sys.stderr, flush=True))
    return 0
