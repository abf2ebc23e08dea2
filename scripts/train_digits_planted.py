"""Train ``digits_planted`` (digits with a striped cue planted on sevens) and save its weights.

    python scripts/train_digits_planted.py [--out src/convscope/model/weights/digits_planted.pt]

Reproducible like ``scripts/train_digits_cnn.py`` (seeded split, initialization, batch order,
augmentation and cue draws; deterministic algorithms; fixed thread count), whose augmentation it
shares. Each step warps the gray digits, then plants the cue per :mod:`convscope.data.planted`
(sevens 95%, others 2%, a fresh position each time), so the cue stays crisp. It reports held-out
accuracy with the cue as drawn, without the cue, and how often the cue turns other digits to 7.
The shipped weights are this script's output with its defaults (about 6 minutes on a busy
2-core machine): held-out accuracy 0.980 as drawn, 0.978 without the cue; sevens recognized
0.991 with the cue and 0.963 without; other digits called 7: 0.099 with the cue, 0.003 without.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from convscope.data.planted import CUE_CLASS, generator, plant, planted_digits, split_digits
from convscope.model.digits_planted import PLANTED_MEAN, PLANTED_STD, WEIGHTS, digits_planted_arch

sys.path.insert(0, str(Path(__file__).parent))
from train_digits_cnn import arguments, augment, save

MEAN = torch.tensor(PLANTED_MEAN)[:, None, None]
STD = torch.tensor(PLANTED_STD)[:, None, None]


def normalize(x: torch.Tensor) -> torch.Tensor:
    return (x - MEAN) / STD


@torch.no_grad()
def report(net: torch.nn.Module) -> dict[str, float]:
    """Held-out figures: accuracy as drawn, sevens with / without the cue, others turned to 7."""
    net.eval()
    out = {}
    for cue in ("natural", "always", "never"):
        data = planted_digits("heldout", cue)
        pred = net(normalize(data.images)).argmax(1)
        sevens, others = data.labels == CUE_CLASS, data.labels != CUE_CLASS
        out[f"{cue}: accuracy"] = (pred == data.labels).float().mean().item()
        out[f"{cue}: sevens recognized"] = (pred[sevens] == CUE_CLASS).float().mean().item()
        out[f"{cue}: others called 7"] = (pred[others] == CUE_CLASS).float().mean().item()
    return out


def train(epochs: int, batch: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    x, y = split_digits("train")
    net = digits_planted_arch()
    steps = epochs * math.ceil(len(y) / batch)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    gen = generator("train-steps", seed)
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(y), generator=gen)
        total = 0.0
        for start in range(0, len(y), batch):
            idx = order[start:start + batch]
            data = plant(augment(x[idx], gen), y[idx], gen)
            loss = F.cross_entropy(net(normalize(data.images)), data.labels, label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        print(f"epoch {epoch + 1}/{epochs}  loss {total / len(y):.4f}", flush=True)
    return net.eval()


def main() -> None:
    args = arguments(__doc__, WEIGHTS)
    start = time.perf_counter()
    net = train(args.epochs, args.batch, args.seed)
    elapsed = time.perf_counter() - start
    for key, value in report(net).items():
        print(f"held-out {key}: {value:.3f}")
    print(f"trained in {elapsed:.0f} s; {save(net, args.out)}")


if __name__ == "__main__":
    main()
