"""What the two ``digit_scenes`` training scripts share: the seeded loop and the command line.

Each step draws ``batch`` fresh "train" scenes (scene ``i`` of the seed: reproducible, never the
same twice), so the models see 30,000+ different canvases made from the 4,000 training digits;
the held-out digits are never drawn. Reproducible: seeded scenes and initialization,
deterministic algorithms, a fixed thread count (1 by default: on 2 shared cores two one-thread
runs side by side were faster than one two-thread run).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from convscope.data.digit_scenes import DigitScenes, SceneBatch

Loss = Callable[[nn.Module, SceneBatch], torch.Tensor]
Score = Callable[[nn.Module, DigitScenes], float]


def arguments(doc: str, out: Path, steps: int) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--out", type=Path, default=out)
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=4e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--size", type=int, default=64, help="side of the training canvases")
    parser.add_argument("--heldout", type=int, default=500, help="held-out scenes to score")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    return args


def train(net: nn.Module, loss_of: Loss, args: argparse.Namespace) -> float:
    """Train ``net`` in place for ``args.steps`` AdamW steps (one-cycle schedule); seconds taken."""
    start = time.perf_counter()
    scenes = DigitScenes("train", n=args.steps * args.batch, seed=args.seed, size=args.size)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps)
    net.train()
    running = 0.0
    for step in range(args.steps):
        batch = scenes.batch(range(step * args.batch, (step + 1) * args.batch))
        loss = loss_of(net, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        running += loss.item()
        if (step + 1) % 50 == 0:
            print(f"step {step + 1}/{args.steps}  loss {running / 50:.4f}  "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
            running = 0.0
    net.eval()
    return time.perf_counter() - start


def save(net: nn.Module, out: Path) -> int:
    """Save the state dict (plain tensors: loads with ``weights_only=True``); its size in bytes."""
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().clone() for k, v in net.state_dict().items()}, out)
    return out.stat().st_size


def train_save_score(net: nn.Module, loss_of: Loss, args: argparse.Namespace, score: Score,
                     metric: str) -> None:
    """Train, save to ``args.out``, then score on ``args.heldout`` held-out scenes and say so."""
    seconds = train(net, loss_of, args)
    size = save(net, args.out)
    held = score(net, DigitScenes("heldout", n=args.heldout))
    print(f"held-out {metric} {held:.4f} on {args.heldout} scenes; trained in {seconds:.0f} s; "
          f"saved {args.out} ({size / 1024:.0f} KiB)")
