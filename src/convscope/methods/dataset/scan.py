"""One streaming pass over a dataset: dataset exemplars, embeddings and predictions together.

For every image (a row of a normalized model-input batch) and every chosen layer with output
(B, C, H, W) the scan records

* the spatial maximum of each channel and its argmax position -> an exact streaming top-k per
  channel (:mod:`.topk`): the "dataset exemplars" of Zeiler & Fergus (2014, Sec. 2.1) and the
  max-activating images of Olah et al. (2017, "Feature Visualization", dataset examples);
* the spatial mean of each channel, the image's pooled embedding (B, C) at that layer (a
  (B, C) layer output is its own embedding);
* the predicted class and its softmax probability.

Only the chosen layers are hooked (:func:`~convscope.model.capture.capture`), each batch runs
under :func:`~convscope.model.guard.guarded` and ``torch.no_grad`` (no autograd graph), and the
full forward runs because predictions are recorded. Activations are read without a copy; if an
in-place operation (``ReLU(inplace=True)``) clobbers one, capture notices (version counter) and
the batch is rerun with copies, as are all later ones. Memory is bounded by one batch plus the
(C, k) state per layer, whatever the dataset size. Argmax ties within a map go to the first
position in row-major order (``torch.max`` returns the first maximal index).

This module is tensors in, tensors out; reading a dataset and writing an atlas happen in
:mod:`convscope.scanning`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ...errors import BadArgument, BadLayer
from ...model.capture import capture
from ...model.fast import default_batch_size
from ...model.guard import guarded
from ...model.layers import resolve_layer
from ...types import ProgressFn
from .topk import Locate, TopK

ACCELERATOR_SCAN_BATCH = 128
"""Default scan batch on CUDA/MPS/XPU; on CPU :func:`default_batch_size` times 4 (16)."""


def scan_batch_size(device: torch.device | str) -> int:
    """Images per forward pass of a scan when the user gives no ``batch_size``.

    A scan has no perturbation copies to build, so its batches can be larger than the inference
    fast path's: on CPU 16 images (per-image cost stops falling beyond small batches), on
    accelerators 128.
    """
    dev = torch.device(device)
    return 4 * default_batch_size(dev) if dev.type == "cpu" else ACCELERATOR_SCAN_BATCH


@dataclass
class BatchResult:
    """What one batch contributes besides the top-k: per-image rows, on the model's device."""

    embeddings: dict[str, Tensor]
    """layer -> (B, C) float32 spatial means."""
    predictions: Tensor
    """(B,) int64 argmax class."""
    probabilities: Tensor
    """(B,) float32 softmax probability of the predicted class."""


@dataclass
class ScanResult:
    """A whole scan of a tensor dataset (see :func:`scan`)."""

    topk: dict[str, TopK]
    embeddings: dict[str, Tensor]
    predictions: Tensor
    probabilities: Tensor
    layers: list[str] = field(default_factory=list)


class Scanner:
    """The running state of a scan: feed it batches with :meth:`step`, read :attr:`topk`.

    ``layers`` are resolved once (``"auto"`` allowed). The top-k state lives on the model's
    device; :meth:`state` / :meth:`load_state` move it through CPU for checkpoints.
    """

    def __init__(self, model: nn.Module, layers: str | Sequence[str], *, k: int = 16) -> None:
        if k < 1:
            raise BadArgument(f"k={k}: keep at least one image per channel")
        names = [layers] if isinstance(layers, str) else list(layers)
        if not names:
            raise BadArgument("no layers to scan; name at least one (e.g. --layers auto)")
        self.model = model
        self.layers = list(dict.fromkeys(resolve_layer(model, n) for n in names))
        self.k = k
        self.topk: dict[str, TopK] = {}
        self._clone = False

    def step(self, inputs: Tensor, indices: Tensor) -> BatchResult:
        """Run one batch of normalized inputs (B, C, H, W) whose dataset indices are ``indices``."""
        if inputs.shape[0] != indices.numel():
            raise BadArgument(f"{inputs.shape[0]} inputs but {indices.numel()} indices")
        try:
            with guarded(self.model), torch.no_grad(), \
                    capture(self.model, self.layers, clone=self._clone) as record:
                logits = self.model(inputs)
                acts = {name: record[name] for name in self.layers}
        except BadLayer:
            if self._clone:
                raise
            self._clone = True  # an in-place op clobbered a capture: copy from now on
            return self.step(inputs, indices)
        embeddings = {}
        for name, act in acts.items():
            maxima, locate, width, mean = _reduce(name, act.detach().float())
            state = self.topk.get(name) or TopK.empty(maxima.shape[1], self.k, maxima.device)
            self.topk[name] = state.update(maxima, locate, indices.to(maxima.device), width)
            embeddings[name] = mean
        if logits.ndim != 2:
            raise BadLayer(f"the model returns shape {tuple(logits.shape)}; a scan needs (B, classes)")
        probs = logits.detach().float().softmax(-1)
        best, predictions = probs.max(-1)
        return BatchResult(embeddings, predictions, best)

    def state(self) -> dict[str, dict[str, Tensor]]:
        return {name: t.state() for name, t in self.topk.items()}

    def load_state(self, state: dict[str, dict[str, Tensor]]) -> None:
        device = next(self.model.parameters(), torch.zeros(0)).device
        self.topk = {name: TopK.from_state(s).to(device) for name, s in state.items()}


def _reduce(name: str, act: Tensor) -> tuple[Tensor, Tensor | Locate, int, Tensor]:
    """(maxima (B,C), argmax locator, map width, spatial mean (B,C)) of a layer output.

    The argmax (first maximal position in row-major order) is computed lazily, only for the
    maps whose maximum enters the top-k: ``amax`` over a batch is about 3x cheaper than ``max``
    with indices, and few maps of a batch make it into a running top-k.
    """
    if act.ndim == 2:
        return act, torch.zeros_like(act, dtype=torch.long), 1, act
    if act.ndim != 4:
        raise BadLayer(f"layer {name!r} has output shape {tuple(act.shape[1:])}; a scan needs "
                       "(C, H, W) or (C,) outputs")
    flat = act.flatten(2)

    def locate(rows: Tensor, channels: Tensor) -> Tensor:
        return flat[rows, channels].argmax(1)

    return flat.amax(2), locate, act.shape[3], flat.mean(2)


def scan(
    model: nn.Module,
    inputs: Tensor | Iterable[Tensor],
    layers: str | Sequence[str],
    *,
    k: int = 16,
    batch_size: int | None = None,
    total: int | None = None,
    progress: ProgressFn | None = None,
) -> ScanResult:
    """Scan normalized inputs (N, C, H, W) (or an iterable of batches) in one pass.

    Image indices are row numbers in order of arrival. Returns the per-layer top-k, the
    (N, C) embeddings, (N,) predictions and probabilities, all on the model's device.
    """
    scanner = Scanner(model, layers, k=k)
    if isinstance(inputs, Tensor):
        step = batch_size or scan_batch_size(inputs.device)
        if step < 1:
            raise BadArgument(f"batch_size={step}: must be a positive integer")
        total = inputs.shape[0]
        batches: Iterable[Tensor] = inputs.split(step)
    else:
        batches = inputs
    parts: list[BatchResult] = []
    done = 0
    for batch in batches:
        indices = torch.arange(done, done + batch.shape[0])
        parts.append(scanner.step(batch, indices))
        done += batch.shape[0]
        if progress is not None:
            progress(done, total if total is not None else done)
    if not parts:
        raise BadArgument("scan got no inputs")
    return ScanResult(
        topk=dict(scanner.topk),
        embeddings={n: torch.cat([p.embeddings[n] for p in parts]) for n in scanner.layers},
        predictions=torch.cat([p.predictions for p in parts]),
        probabilities=torch.cat([p.probabilities for p in parts]),
        layers=scanner.layers,
    )
