"""KernelSHAP on superpixels or feature groups: Shapley values from a constrained linear fit.

Lundberg & Lee 2017, "A Unified Approach to Interpreting Model Predictions", Theorem 2: with the
Shapley kernel

    pi(z') = (M - 1) / (C(M, |z'|) |z'| (M - |z'|))

over coalitions z' in {0, 1}^M of the M groups, the weighted least-squares fit
g(z') = phi_0 + sum_i phi_i z'_i of f(h(z')) (h: the input with the off groups showing the
baseline) gives the Shapley values, provided the infinite weights of z' = 0 and z' = 1 are kept
as constraints: phi_0 = f(all off) and the efficiency property (Eq. 5 with Property 1)
sum_i phi_i = f(x) - f(all off). Here both ends are scored exactly and the constraint is solved
exactly, as a KKT system in float64 (Captum approximates it by a weight of 1e6 on both rows).

Coalitions: when every coalition fits in ``samples`` (2^M - 2 <= samples) all of them are
enumerated with their kernel weights, which gives the exact Shapley values; otherwise
``samples`` coalitions are drawn as Captum's ``KernelShap`` draws them: a size k with
probability proportional to (M - 1) / (k (M - k)), then k groups uniformly, each row with weight
1 (sampling proportional to the kernel is the kernel's weighting). The groups, what off groups
show and the chunked scoring on the fast path are LIME's (:mod:`.coalitions`).

Shapes: (B, C, H, W) -> (B, 1, H, W), each pixel carrying its superpixel's phi; tables, signals
and several inputs -> each element carries its group's phi. ``explain_superpixels`` gives phi
(B, S), f(all off) as ``intercept`` and the labels.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...model import Model
from ...types import ProgressFn
from ..registry import register
from .baselines import SegmentBaseline
from .coalitions import Coalitions, Score, Segmentation


def shapley_kernel(size: Tensor, m: int) -> Tensor:
    """pi for coalitions of ``size`` groups out of ``m`` (0 < size < m), float64."""
    k = size.double()
    return (m - 1) / (torch.exp(torch.lgamma(torch.tensor(m + 1.0, dtype=torch.float64))
                                - torch.lgamma(k + 1) - torch.lgamma(m - k + 1)) * k * (m - k))


def all_coalitions(m: int) -> Tensor:
    """Every coalition of ``m`` groups except none and all, (2^m - 2, m) bool."""
    codes = torch.arange(1, 2**m - 1)
    return (codes[:, None] >> torch.arange(m)) & 1 == 1


def kernel_coalitions(m: int, n: int, gen: torch.Generator) -> Tensor:
    """``n`` coalitions (n, m) bool drawn proportionally to the Shapley kernel (Captum's way)."""
    sizes = torch.arange(1, m)
    p = 1 / (sizes * (m - sizes)).double()
    k = sizes[torch.multinomial(p / p.sum(), n, replacement=True, generator=gen)]
    ranks = torch.rand(n, m, generator=gen).argsort(1).argsort(1)
    return ranks < k[:, None]


def constrained_fit(bits: Tensor, weights: Tensor, scores: Tensor,
                    counts: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """min sum_n w_n (y_n - z_n phi)^2 subject to sum phi = f(x) - f(0), per batch row.

    ``bits`` (B, R, S) with row 0 all on and row 1 all off, ``weights`` (B, R) (0 for those two),
    ``scores`` (B, R); y = f(z) - f(0). The KKT system [[Z^T W Z, 1], [1^T, 0]] is solved with the
    pseudo-inverse (consistent even when too few samples leave Z^T W Z singular); padded groups
    (s >= counts[b]) get an identity row and phi = 0. Returns phi (B, S), f(0) (B,) and the
    weighted R^2 of the fit on the weighted rows (B,), float64.
    """
    z, w, f = bits.double(), weights.double(), scores.double()
    b, _, s = z.shape
    off = f[:, 1]
    y = f - off[:, None]
    valid = (torch.arange(s, device=z.device) < counts.to(z.device)[:, None]).double()
    kkt = z.new_zeros(b, s + 1, s + 1)
    kkt[:, :s, :s] = z.transpose(1, 2) @ (w[..., None] * z) + torch.diag_embed(1 - valid)
    kkt[:, :s, s], kkt[:, s, :s] = valid, valid
    rhs = torch.cat([(z.transpose(1, 2) @ (w * y)[..., None]).squeeze(-1), y[:, :1]], 1)
    phi = (torch.linalg.pinv(kkt) @ rhs[..., None]).squeeze(-1)[:, :s] * valid
    fitted = (z @ phi[..., None]).squeeze(-1)
    total = w.sum(1, keepdim=True).clamp_min(1e-300)
    mean = (w * y).sum(1, keepdim=True) / total
    spread = (w * (y - mean).square()).sum(1)
    residual = (w * (y - fitted).square()).sum(1)
    r2 = torch.where(spread > 0, 1 - residual / spread.clamp_min(1e-300), (residual == 0).double())
    return phi, off, r2


@register("kernel_shap", family="perturbation", signed=True)
class KernelShap(Coalitions):
    """KernelSHAP (Lundberg & Lee 2017): Shapley values of superpixels or feature groups.

    Options: ``samples`` coalitions (all of them when 2^groups - 2 <= samples: exact Shapley
    values), ``segments`` (approximate SLIC count) and ``compactness``, ``segmentation``,
    ``baseline`` shown for an off group ("mean", the default, "black", "blur" with ``sigma``
    pixels, "uniform", "segment_mean" or a tensor: see :mod:`.baselines`), ``score`` explained
    ("logit", the default, or "probability"), ``groups`` / ``window`` for inputs that are not one
    image batch, ``batch_size`` perturbed inputs per forward pass, ``seed``. The attributions
    sum to f(x) - f(every group off) exactly.
    """

    def __init__(
        self,
        model: Model,
        *,
        samples: int = 1000,
        segments: int = 50,
        compactness: float = 10.0,
        segmentation: Segmentation = "slic",
        baseline: SegmentBaseline | Tensor = "mean",
        score: Score = "logit",
        sigma: float = 10.0,
        groups: Tensor | tuple[Tensor, ...] | None = None,
        window: int | tuple[int, ...] | None = None,
        batch_size: int | None = None,
        seed: int = 0,
        progress: ProgressFn | None = None,
    ) -> None:
        super().__init__(model, samples=samples, segments=segments, compactness=compactness,
                         segmentation=segmentation, baseline=baseline, score=score, sigma=sigma,
                         groups=groups, window=window, batch_size=batch_size, seed=seed,
                         progress=progress)

    def draw(self, counts: Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
        """Bits (B, 2 + N, S): all on, all off, then the coalitions; their weights (B, 2 + N).

        N is ``samples``, or 2^M - 2 when every image's M groups can all be enumerated; an image
        with fewer coalitions than N fills its remaining rows with weight 0.
        """
        gen = torch.Generator().manual_seed(self.seed)
        m_max = int(counts.max())
        enumerable = [2**m - 2 <= self.samples for m in counts.tolist()]
        n = max(2**m_max - 2, 0) if all(enumerable) else self.samples
        bits = torch.zeros(len(counts), n + 2, m_max, dtype=torch.bool)
        weights = torch.zeros(len(counts), n + 2, dtype=torch.float64)
        for b, m in enumerate(counts.tolist()):
            bits[b, 0, :m] = True
            if enumerable[b]:
                rows = all_coalitions(m)
                weights[b, 2:2 + len(rows)] = shapley_kernel(rows.sum(1), m)
            else:
                rows = kernel_coalitions(m, n, gen)
                weights[b, 2:] = 1.0
            bits[b, 2:2 + len(rows), :m] = rows
        return bits.to(device), weights.to(device)

    def fit(self, bits: Tensor, weights: Tensor, scores: Tensor,
            counts: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return constrained_fit(bits, weights, scores, counts)

