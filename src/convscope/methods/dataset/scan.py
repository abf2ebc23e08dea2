"""One streaming pass over a dataset: dataset exemplars, embeddings and predictions together.

For every image (a row of a normalized model-input batch) and every chosen layer with output
(B, C, H, W) the scan records

* the spatial maximum of each channel and its argmax position -> an exact streaming top-k per
  channel (:mod:`.topk`): the "dataset exemplars" of Zeiler & Fergus (2014, Sec. 2.1) and the
  max-activating images of Olah et al. (2017, "Feature Visualization", dataset examples);
* the spatial mean of each channel, the image's pooled embedding (B, C) at that layer (a
  (B, C) layer output is its own embedding);
* the predicted class and its softmax probability.

The forward passes run on the inference copy of the model
(:func:`~convscope.model.fast.inference_net`, built once per scan): eval mode, BatchNorm folded
into the convolutions before it except where that would change a hooked layer's output, and
channels-last on CPU, under ``torch.no_grad``. On this project's CPU that made the scan's forward
faster than the plain model's (``benchmarks/scan_bench.py``); the user's module is only read.
Only the chosen layers are hooked (:func:`~convscope.model.capture.capture`), and the full
forward runs because predictions are recorded. Each hooked map is reduced and merged into the
top-k inside its hook, as soon as its layer has produced it: a later in-place operation
(``ReLU(inplace=True)``) cannot have changed it yet, and no map outlives its layer, so a scan
holds no more memory than the plain forward. Memory is bounded by one batch plus the
(C, k) state per layer, whatever the dataset size. Argmax ties within a map go to the first
position in row-major order (``torch.max`` returns the first maximal index).

This module is tensors in, tensors out; reading a dataset and writing an atlas happen in
:mod:`convscope.tasks.scan`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ...errors import BadArgument, BadLayer, check_positive
from ...model.capture import capture, layer_map
from ...model.fast import as_input_of, default_batch_size, inference_net
from ...model.guard import guarded
from ...model.layers import get_layer, resolve_layer, unwrap
from ...types import ProgressFn
from .topk import Locate, TopK

ACCELERATOR_SCAN_BATCH = 128
"""Default scan batch on CUDA/MPS/XPU."""
CPU_SCAN_PIXELS = 16 * 224 * 224
"""Default CPU scan batch, in input pixels: 16 images at 224x224 (see :func:`scan_batch_size`)."""
CPU_SCAN_MAX = 128


def scan_batch_size(device: torch.device | str, input_size: tuple[int, int] | None = None) -> int:
    """Images per forward pass of a scan when the user gives no ``batch_size``.

    A scan has no perturbation copies to build, so its batches can be larger than the inference
    fast path's. On CPU the per-image cost stops falling beyond a batch of about 16 images at
    224x224 (:mod:`convscope.model.fast`), so the batch holds that many pixels: smaller inputs
    get proportionally more images, a power of two up to 128 (MNIST-5k with digits_cnn, 28x28,
    on this project's 2-core VM: 4,200-5,800 img/s at batch 16, 10,300-10,800 at 128,
    9,000-10,200 at 256 and 512). On accelerators 128.
    """
    dev = torch.device(device)
    if dev.type != "cpu":
        return ACCELERATOR_SCAN_BATCH
    base = 4 * default_batch_size(dev)
    if input_size is None:
        return base
    fits = CPU_SCAN_PIXELS // max(1, input_size[0] * input_size[1])
    return max(base, min(CPU_SCAN_MAX, 1 << max(0, fits.bit_length() - 1)))


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

    def __init__(self, model: nn.Module, layers: str | Sequence[str], *, k: int = 16,
                 relevance: bool = False, relevance_target: int | None = None) -> None:
        if k < 1:
            raise BadArgument(f"k={k}: keep at least one image per channel")
        names = [layers] if isinstance(layers, str) else list(layers)
        if not names:
            raise BadArgument("no layers to scan; name at least one (e.g. --layers auto)")
        self.model = model
        self.layers = list(dict.fromkeys(resolve_layer(model, n) for n in names))
        net = unwrap(model)
        self.net = inference_net(model, keep=[get_layer(net, n) for n in self.layers])
        self.k = k
        self.topk: dict[str, TopK] = {}
        self.relevance = None
        """Relevance exemplars (RelMax) too, kept in :attr:`topk` under ``layer + RELEVANCE_RECORDS``."""
        if relevance or relevance_target is not None:
            from ...model import Model
            from ..concepts.relmax import RelevanceExemplars

            if not isinstance(model, Model):
                raise BadArgument("relevance exemplars need a convscope Model (load_model(net)); "
                                  f"got {type(model).__name__}")
            self.relevance = RelevanceExemplars(model, self.layers, target=relevance_target)

    def step(self, inputs: Tensor, indices: Tensor) -> BatchResult:
        """Run one batch of normalized inputs (B, C, H, W) whose dataset indices are ``indices``."""
        if inputs.shape[0] != indices.numel():
            raise BadArgument(f"{inputs.shape[0]} inputs but {indices.numel()} indices")
        embeddings: dict[str, Tensor] = {}

        def reduce(name: str, out: Tensor) -> None:  # in the hook: before any in-place op
            # capture refuses a bare name whose module runs twice: one output per layer here;
            # maps are read as every reader reads them (model/tokens.py), (B, C) rows as they are
            act = out.detach().float()
            if act.ndim != 2:
                act = layer_map(self.net, name, act, inputs.shape)
            maxima, locate, width, mean = _reduce(name, act)
            state = self.topk.get(name) or TopK.empty(maxima.shape[1], self.k, maxima.device)
            self.topk[name] = state.update(maxima, locate, indices.to(maxima.device), width)
            embeddings[name] = mean

        # the copy is the scan's own; only a model that refused to be copied needs guarding
        guard = guarded(self.model) if self.net is self.model else nullcontext()
        with guard, torch.no_grad(), capture(self.net, self.layers, on_output=reduce):
            logits = self.net(as_input_of(self.net, inputs))
        missing = [name for name in self.layers if name not in embeddings]
        if missing:
            raise BadLayer(f"layer {missing[0]!r} was not reached by the forward pass")
        if logits.ndim != 2:
            raise BadLayer(f"the model returns shape {tuple(logits.shape)}; a scan needs (B, classes)")
        probs = logits.detach().float().softmax(-1)
        best, predictions = probs.max(-1)
        if self.relevance is not None:
            self.relevance.step(inputs, indices, predictions, self.topk, self.k)
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
    if act.ndim == 2:  # its own embedding; copied, since a later in-place op may change it
        return act, torch.zeros_like(act, dtype=torch.long), 1, act.clone()
    if act.ndim != 4:
        raise BadLayer(f"layer {name!r} has output shape {tuple(act.shape[1:])}; a scan needs "
                       "(C, H, W) or (C,) outputs")

    def locate(rows: Tensor, channels: Tensor) -> Tensor:
        return act[rows, channels].flatten(1).argmax(1)  # (n, H*W) in row-major order

    if act.is_contiguous(memory_format=torch.channels_last) and not act.is_contiguous():
        # (B, H, W, C) in memory: reducing H, then W, keeps the reads contiguous (amax over
        # (2, 3) of a channels-last map with few channels was measured 9x slower)
        maxima = act.permute(0, 2, 3, 1).amax(1).amax(1)
    else:
        maxima = act.amax((2, 3))
    return maxima, locate, act.shape[3], act.mean((2, 3))


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
        step = (scan_batch_size(inputs.device, (inputs.shape[-2], inputs.shape[-1])) if batch_size is None
                else batch_size)
        check_positive("batch_size", step, integer=True)
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
