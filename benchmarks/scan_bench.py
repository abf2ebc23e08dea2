"""Dataset scan throughput against the bare forward pass of the same model and batch size.

    python -m benchmarks.scan_bench [--device cpu|cuda] [--repeats 3] [--quick] [--threads N]

``scan`` is the whole ``convscope.scanning.scan_dataset`` into a fresh atlas: decoding every
image from its source, preprocessing, the forward with hooks on the chosen layers, streaming
top-k, embeddings, thumbnails and the SQLite/npy writes. ``bare`` is the model alone on the same
images already preprocessed into tensors, same batch size, under ``torch.inference_mode`` (the
floor a scan cannot beat). Turns alternate (bare, scan, bare, scan, ...) and medians are
reported, so load from other processes hits both alike. Goal: scan >= 0.85x bare.

Cases: ``digits_cnn`` on MNIST-5k (5,000 28x28 digits, batch 256, layers block1 + block4) when
that model is available, and EfficientNet-Lite0 on a folder of 64 JPEG copies of the sample
photos (batch 16, an early block and the last feature map).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from convscope.data import load_image
from convscope.data.datasets import open_dataset
from convscope.model import Model, available_models, load_model
from convscope.scanning import scan_dataset

PHOTOS = ("cat", "coffee", "astronaut", "chelsea")


@dataclass
class ScanRow:
    name: str
    images: int
    batch: int
    bare_s: float
    scan_s: float
    bare_best_s: float
    scan_best_s: float

    @property
    def ratio(self) -> float:
        return self.bare_s / self.scan_s

    @property
    def best_ratio(self) -> float:
        """Ratio of the fastest turns: load from other processes only ever adds time."""
        return self.bare_best_s / self.scan_best_s


def _photo_folder(root: Path, copies: int) -> Path:
    folder = root / "photos"
    folder.mkdir()
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


def _turns(bare: Callable[[], None], scan: Callable[[], None], repeats: int, device: torch.device
           ) -> tuple[float, float, float, float]:
    def timed(fn: Callable[[], None]) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    bare()
    scan()  # warm-up: allocator, oneDNN primitives, file cache
    times: dict[str, list[float]] = {"bare": [], "scan": []}
    for _ in range(repeats):
        times["bare"].append(timed(bare))
        times["scan"].append(timed(scan))
    return (statistics.median(times["bare"]), statistics.median(times["scan"]), min(times["bare"]),
            min(times["scan"]))


def scan_rows(device: torch.device, repeats: int = 3, quick: bool = False) -> list[ScanRow]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if "digits_cnn" in available_models():
            model = load_model("digits_cnn", device=device)
            dataset: object = "mnist5k"
            if quick:
                dataset = [(it.image, it.label) for it in list(open_dataset("mnist5k"))[:1000]]
            batch = 256
            n = len(open_dataset(dataset))
            bare, scan = _bare(model, dataset, batch), _scan(model, dataset, ["block1", "block4"],
                                                            batch, root)
            rows.append(ScanRow("digits_cnn, mnist5k", n, batch, *_turns(bare, scan, repeats, device)))
        model = load_model("efficientnet_lite0", device=device)
        folder = _photo_folder(root, 16 if quick else 64)
        layers = ["_blocks.3", "auto"]
        bare, scan = _bare(model, folder, 16), _scan(model, folder, layers, 16, root)
        rows.append(ScanRow("efficientnet_lite0, JPEG folder", len(open_dataset(folder)), 16,
                            *_turns(bare, scan, repeats, device)))
    return rows


def print_scan_table(rows: list[ScanRow]) -> None:
    print(f"{'scan benchmark (medians)':<34} {'images':>7} {'batch':>6} {'bare img/s':>11} "
          f"{'scan img/s':>11} {'ratio':>6} {'best-turn ratio':>16}")
    for r in rows:
        print(f"{r.name:<34} {r.images:>7} {r.batch:>6} {r.images / r.bare_s:>11.1f} "
              f"{r.images / r.scan_s:>11.1f} {r.ratio:>6.2f} {r.best_ratio:>16.2f}")


def scan_table(model: Model, device: torch.device) -> None:
    """The scan table at its defaults, for ``benchmarks.run`` (it loads its own models)."""
    print("\n== scan throughput against the bare forward of the same model and batch size")
    print_scan_table(scan_rows(device))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3)
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
