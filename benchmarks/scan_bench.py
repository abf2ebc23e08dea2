"""Dataset scan throughput against the bare forward pass of the same model and batch size.

    python -m benchmarks.scan_bench [--device cpu|cuda] [--repeats 5] [--quick] [--threads N]

``scan`` is the whole ``convscope.tasks.scan.scan_dataset`` into a fresh atlas: decoding every
image from its source, preprocessing, the forward with hooks on the chosen layers, streaming
top-k, embeddings, thumbnails and the SQLite/npy writes. ``bare`` is the model alone on the same
images already preprocessed into tensors, same batch size, under ``torch.inference_mode``: what
``model(x)`` costs. (The scan's forward runs on a BN-folded, channels-last copy of the model,
which is how it can beat that.) Goal: scan >= 0.85x bare.

Each case runs on a small and a full dataset, in alternating turns (bare small, scan small, bare
full, scan full, ...; medians), and reports:

* ``img/s``: steady-state throughput, from the marginal cost per image,
  (time full - time small) / (images full - images small), for both: what a long scan runs at;
* ``steady``: the ratio of those throughputs (the goal's measure);
* ``whole``: bare time / scan time on the full dataset, the scan's setup included;
* ``setup``: the scan's fixed cost (copying and folding the model, resolving layers, creating and
  finishing the atlas): its small-dataset time less the small images at the marginal rate.

Cases: ``digits_cnn`` on MNIST-5k (the first 1,000 and all 5,000 digits, batch 256, layers
block1 + block4) when that model is available, and EfficientNet-Lite0 on folders of 32 and 96
JPEG copies of the sample photos (batch 16, an early block and the last feature map).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from convscope.data import load_image
from convscope.data.datasets import Mnist5k, open_dataset
from convscope.model import Model, available_models, load_model
from convscope.tasks.scan import scan_dataset

from .timing import measure_alternating

PHOTOS = ("cat", "coffee", "astronaut", "chelsea")


@dataclass
class ScanRow:
    name: str
    images: tuple[int, int]
    """(small, full) dataset sizes."""
    batch: int
    bare_s: tuple[float, float]
    """Median bare seconds on the (small, full) datasets."""
    scan_s: tuple[float, float]

    def marginal(self, times: tuple[float, float]) -> float:
        """Seconds per image beyond the small dataset."""
        return (times[1] - times[0]) / (self.images[1] - self.images[0])

    @property
    def steady(self) -> float:
        return self.marginal(self.bare_s) / self.marginal(self.scan_s)

    @property
    def whole(self) -> float:
        return self.bare_s[1] / self.scan_s[1]

    @property
    def setup_s(self) -> float:
        return self.scan_s[0] - self.images[0] * self.marginal(self.scan_s)


def _photo_folder(root: Path, copies: int) -> Path:
    folder = root / "photos"
    folder.mkdir(parents=True)
    from PIL import Image

    names = [n for n in PHOTOS if _has_sample(n)] or ["cat"]
    for i in range(copies):
        pixels = load_image(f"sample:{names[i % len(names)]}")
        array = (pixels.permute(1, 2, 0) * 255).round().byte().numpy()
        Image.fromarray(array).save(folder / f"photo{i:03d}.jpg", quality=90)
    return folder


def _has_sample(name: str) -> bool:
    try:
        load_image(f"sample:{name}")
    except Exception:
        return False
    return True


def _bare(model: Model, dataset: object, batch: int) -> Callable[[], None]:
    ds = open_dataset(dataset)  # type: ignore[arg-type]
    x = model.preprocess([ds.load(i).image for i in range(len(ds))])
    chunks = x.split(batch)

    def run() -> None:
        with torch.inference_mode():
            for chunk in chunks:
                model(chunk)
    return run


def _scan(model: Model, dataset: object, layers: list[str], batch: int, root: Path
          ) -> Callable[[], None]:
    counter = [0]

    def run() -> None:
        counter[0] += 1
        atlas = root / f"atlas{counter[0]}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scan_dataset(model, dataset, atlas, layers=layers, k=16, batch_size=batch)
        shutil.rmtree(atlas)
    return run


def _case(name: str, model: Model, datasets: tuple[object, object], layers: list[str], batch: int,
          root: Path, repeats: int, device: torch.device) -> ScanRow:
    fns = {}
    for size, data in zip(("small", "full"), datasets):
        fns[f"bare {size}"] = _bare(model, data, batch)
        fns[f"scan {size}"] = _scan(model, data, layers, batch, root)
    timed = measure_alternating(list(fns.values()), images=1, device=device, repeats=repeats)
    t = {name: m.seconds for name, m in zip(fns, timed)}
    small, full = (len(open_dataset(d)) for d in datasets)  # type: ignore[arg-type]
    return ScanRow(name, (small, full), batch, (t["bare small"], t["bare full"]),
                   (t["scan small"], t["scan full"]))


def _digits(count: int) -> Mnist5k:
    """The first ``count`` MNIST-5k digits, read the way the full set is."""
    ds = Mnist5k()
    ds.images, ds.labels = ds.images[:count], ds.labels[:count]
    return ds


def scan_rows(device: torch.device, repeats: int = 5, quick: bool = False) -> list[ScanRow]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if "digits_cnn" in available_models():
            model = load_model("digits_cnn", device=device)
            digits = tuple(_digits(n) for n in ((500, 1500) if quick else (1000, 5000)))
            rows.append(_case("digits_cnn, mnist5k", model, digits, ["block1", "block4"], 256,
                              root, repeats, device))
        model = load_model("efficientnet_lite0", device=device)
        folders = tuple(_photo_folder(root / f"photos{n}", n) for n in ((16, 48) if quick else (32, 96)))
        rows.append(_case("efficientnet_lite0, JPEG folder", model, folders, ["_blocks.3", "auto"],
                          16, root, repeats, device))
    return rows


def print_scan_table(rows: list[ScanRow]) -> None:
    print(f"{'scan benchmark (medians)':<34} {'images':>10} {'batch':>6} {'bare img/s':>11} "
          f"{'scan img/s':>11} {'steady':>7} {'whole':>6} {'setup s':>8}")
    for r in rows:
        print(f"{r.name:<34} {r.images[0]:>4}/{r.images[1]:<5} {r.batch:>6} "
              f"{1 / r.marginal(r.bare_s):>11.1f} {1 / r.marginal(r.scan_s):>11.1f} "
              f"{r.steady:>7.2f} {r.whole:>6.2f} {r.setup_s:>8.2f}")
    print("img/s: steady-state (marginal) throughput; steady: their ratio, scan/bare (goal >= 0.85); "
          "whole: on the full set, setup included")


def scan_table(model: Model, device: torch.device) -> None:
    """The scan table at its defaults, for ``benchmarks.run`` (it loads its own models)."""
    print("\n== scan throughput against the bare forward of the same model and batch size")
    print_scan_table(scan_rows(device))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="fewer images (a smoke run)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's); "
                        "1 gives stable numbers on an oversubscribed machine")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"scan throughput: torch {torch.__version__}, {device}, {torch.get_num_threads()} threads")
    print_scan_table(scan_rows(device, args.repeats, args.quick))


if __name__ == "__main__":
    main()
