"""The CAM family against pytorch-grad-cam (issue 22): ``python -m benchmarks.check --only cam_family``.

Each new CAM through the public call, ``explain(model, x, method=NAME, layer="layer4",
target=[...])``, against the same method of pytorch-grad-cam (PyPI grad-cam 1.5.7) built and
called as a user does (``NAME(model, target_layers=[layer])(input_tensor=x, targets=[...])``,
hooks released after the call), on torchvision's ResNet-18 (seeded random weights) and the same
batch, in alternating turns. The goal is at most 1.1x theirs.

pytorch-grad-cam (and torchvision) are installed only in the zoo venv (``.venv-zoo``, the
``zoo`` extra). Run from the main venv, the group hands itself to that venv's interpreter
(``CONVSCOPE_ZOO_PYTHON`` names another one) with this checkout's ``src`` first on the path;
where neither has pytorch_grad_cam the group is skipped and says why (:class:`Skipped`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .check import Context, Measured

ROOT = Path(__file__).resolve().parent.parent
ZOO_PYTHON = Path(os.environ.get("CONVSCOPE_ZOO_PYTHON", ROOT / ".venv-zoo" / "bin" / "python"))
METHODS = {"hirescam": "HiResCAM", "xgradcam": "XGradCAM", "layercam": "LayerCAM",
           "eigencam": "EigenCAM", "eigengradcam": "EigenGradCAM", "fullgrad": "FullGrad",
           "ablationcam": "AblationCAM"}
"""Our method name -> pytorch-grad-cam's class."""
BATCH, SIDE = 8, 224
"""The batch every gradient CAM explains: 8 images at 224 x 224 (``--quick``: 2 at 160 x 160)."""
ABLATION_BATCH, ABLATION_SIDE = 1, 112
"""AblationCAM runs one forward per channel of layer4 (512): one image at 112 x 112
(``--quick``: 64 x 64)."""


class Skipped(Exception):
    """The group cannot run here (the reference library is missing); the message says why."""


def has_reference() -> bool:
    try:
        import pytorch_grad_cam  # noqa: F401
        import torchvision  # noqa: F401
    except ImportError:
        return False
    return True


def delegate(ctx: Context, group: str = "cam_family", needs: str = "pytorch_grad_cam") -> list[Measured]:
    """Run ``group`` in the zoo venv's interpreter, where ``needs`` (a reference library that
    lives only there) imports; its figures, or :class:`Skipped`."""
    from .check import RESULT_PREFIX, Measured

    probe = [str(ZOO_PYTHON), "-c", f"import {needs}, torchvision"]
    if not ZOO_PYTHON.exists() or subprocess.run(probe, capture_output=True).returncode != 0:
        raise Skipped(f"{needs} is not importable in {sys.executable} nor in {ZOO_PYTHON} "
                      "(build .venv-zoo as the README says, or set CONVSCOPE_ZOO_PYTHON)")
    command = [str(ZOO_PYTHON), "-m", "benchmarks.check", "--child", group,
               "--repeats", str(ctx.repeats)] + ["--quick"] * ctx.quick
    command += ["--plant", ctx.plant] if ctx.plant else []
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{group} in {ZOO_PYTHON}: exit {proc.returncode}: "
                           f"{(proc.stderr.strip().splitlines() or ['(no output)'])[-1]}")
    return [Measured(**m) for m in json.loads(lines[-1][len(RESULT_PREFIX):])]


def group_cam_family(ctx: Context) -> list[Measured]:
    if not has_reference():
        return delegate(ctx)
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from torchvision.models import resnet18

    from convscope import explain
    from convscope.model import Model, Preprocess

    from .check import ratio

    torch.manual_seed(0)
    model = Model(resnet18().eval(), preprocess=Preprocess(input_size=(SIDE, SIDE)), name="resnet18")
    out = []
    for name, cls_name in METHODS.items():
        batch, side = ((ABLATION_BATCH, ctx.size(ABLATION_SIDE, 64)) if name == "ablationcam"
                       else (ctx.size(BATCH, 2), ctx.size(SIDE, 160)))
        x = torch.randn(batch, 3, side, side, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            targets = model(x).argmax(1).tolist()
        where: dict[str, Any] = {} if name == "fullgrad" else {"layer": "layer4"}
        ours = ctx.subject(lambda n=name, x=x, t=targets, w=where: explain(model, x, method=n, target=t, **w))
        theirs = _theirs(getattr(pgc, cls_name), model.net, x, [ClassifierOutputTarget(t) for t in targets])
        turns = ctx.turns([ours, theirs])  # theirs sets eval mode and calls backward() itself
        out.append(ratio(f"{name}-gradcam-lib", turns, 0, 1))
        print(f"cam_family: {name} {out[-1].ratio:.2f}x, {1000 * min(turns.times[0]):.0f} ms, "
              "pytorch-grad-cam "
              f"{1000 * min(turns.times[1]):.0f} ms ({batch} x {side}^2)", file=sys.stderr, flush=True)
    return out


def _theirs(cls: Any, net: torch.nn.Module, x: torch.Tensor, targets: list[Any]) -> Any:
    """pytorch-grad-cam's call as a user writes it: build, call, release the hooks."""
    def call() -> None:
        cam = cls(model=net, target_layers=[net.layer4])
        try:
            cam(input_tensor=x, targets=targets)
        finally:
            cam.activations_and_grads.release()

    return call
