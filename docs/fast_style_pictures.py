"""The fast style transfer picture: ``python docs/fast_style_pictures.py [--steps 300]``.

Trains a small Johnson-style network (width 16, 3 residual blocks) for a few hundred steps on
128 px crops of the sample photos, in the style of ``sample:coffee`` (wood grain and red china),
with the embedded EfficientNet-Lite0 as the loss network, then stylizes two photos and writes
``docs/images/fast_style.png`` (style | content | stylized, captioned). The trained network is
kept in the system's temp folder (``--net``) so a second run only redraws; ``--retrain`` forces
training, ``--resume`` continues an interrupted one.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import convscope
from convscope.methods.synthesis.fast_style import load_fast_style, stylize, train_fast_style
from convscope.render import image_grid, save_png

OUT = Path(__file__).parent / "images" / "fast_style.png"
PHOTOS = ["cat", "coffee", "astronaut", "rocket", "motorcycle"]
STYLE, SHOWN = "coffee", ["cat", "astronaut"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--style-weight", type=float, default=3.0)
    parser.add_argument("--style", default=STYLE)
    parser.add_argument("--net", type=Path, default=Path(tempfile.gettempdir()) / "convscope_fast_style.pt")
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted training in --net")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    style = convscope.load_image(f"sample:{args.style}")
    if args.retrain or args.resume or not args.net.is_file():
        model = convscope.load_model()
        photos = [convscope.load_image(f"sample:{n}") for n in PHOTOS]
        losses: list[float] = []
        start = time.perf_counter()
        train_fast_style(style, photos, model=model, steps=args.steps, size=args.size,
                         batch_size=args.batch, style_weight=args.style_weight, width=16, blocks=3,
                         checkpoint_every=25, checkpoint_path=args.net,
                         resume_from=args.net if args.resume else None,
                         callback=lambda step, loss: losses.append(float(loss.mean())))
        print(f"trained {args.steps} steps in {time.perf_counter() - start:.0f}s; loss "
              f"{sum(losses[:10]) / 10:.3f} (first 10) -> {sum(losses[-10:]) / 10:.3f} (last 10)")
    net = load_fast_style(args.net)
    tiles, captions = [style], [f"style: sample:{args.style}"]
    for name in SHOWN:
        photo = convscope.load_image(f"sample:{name}")
        h, w = photo.shape[-2:]
        tiles += [photo, stylize(net, photo)]
        captions += [f"content: sample:{name}", f"stylized ({w}x{h}, one forward pass)"]
    grid = image_grid(tiles, captions=captions, ncols=len(tiles), tile_size=256,
                      title=f"Fast style transfer (Johnson et al. 2016): one forward pass per image; "
                            f"net trained {args.steps} steps on {args.size}px crops of the sample photos")
    print(save_png(grid, args.out))


if __name__ == "__main__":
    main()
