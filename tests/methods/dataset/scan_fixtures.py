"""A model and datasets whose arithmetic is exact, shared by the scan tests and their workers.

Weights are small integers and pixels multiples of 1/4, so every convolution, sum and mean is
computed exactly in float32 whatever the batch size, thread count or process: two scans that
should agree must agree bit for bit, and duplicated images give true ties in the top-k.
Also imported by subprocess workers (torchrun, SIGKILL) by path, so it holds no pytest code.
"""

from __future__ import annotations

import sys

import torch
from torch import nn

from convscope.model import Model, Preprocess


class IntNet(nn.Module):
    """conv(3->4) relu conv(4->5, stride 2) relu maxpool -> GAP -> linear(5->3); integer weights."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 5, 3, stride=2, padding=1, bias=False)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(5, 3, bias=False)
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for layer in (self.conv1, self.conv2, self.fc):
                layer.weight.copy_(torch.randint(-1, 2, layer.weight.shape, generator=g).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc(self.pool(x).flatten(1) / 8)


def int_model() -> Model:
    """IntNet behind an identity normalization at 12x12 (so preprocessing is exact too)."""
    return Model(IntNet().eval(), preprocess=Preprocess((12, 12), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
                 labels=["a", "b", "c"], name="intnet")


def int_images(n: int = 40, seed: int = 0) -> torch.Tensor:
    """(n, 3, 12, 12) images of quarter values; every 5th image repeats an earlier one (ties)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 5, (n, 3, 12, 12), generator=g).float() / 4
    for i in range(5, n, 5):
        images[i] = images[i - 5 + (i // 5) % 3]
    return images


def int_dataset(n: int = 40) -> list[tuple[torch.Tensor, int]]:
    """(image, label) pairs, labels cycling 0..2."""
    return [(img, i % 3) for i, img in enumerate(int_images(n))]


if __name__ == "__main__":  # worker: python scan_fixtures.py ATLAS N CHUNK BATCH [SLEEP]
    import time

    from convscope.tasks.scan import scan_dataset

    atlas, n, chunk, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    pause = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0

    def committed(chunks: int) -> None:
        print(f"committed {chunks}", flush=True)
        time.sleep(pause)

    torch.set_num_threads(1)
    scan_dataset(int_model(), int_dataset(n), atlas, layers=["relu1", "conv2"], k=4,
                 batch_size=batch, chunk_size=chunk, on_commit=committed)
    print("done", flush=True)
