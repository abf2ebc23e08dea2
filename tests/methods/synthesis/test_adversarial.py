"""Adversarial examples: targeted PGD on every sample photo, exact budgets, 8-bit round trips."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from convscope.data import list_samples, load_image
from convscope.errors import BadArgument
from convscope.methods.synthesis import Adversarial, fgsm, on_grid, pgd, project_to_budget, quantize
from convscope.model import Model, Preprocess
from convscope.render import save_png

EPS = 4 / 255
SIZE = 96
GOLDFISH = 1  # far from every sample photo's class (cats, espresso, rockets, textures, ...)


def _photos(names: list[str], size: int = SIZE) -> torch.Tensor:
    """8-bit sample photos at ``size``: the originals an attacker would start from."""
    x = torch.stack([F.interpolate(load_image(f"sample:{n}")[None], size=(size, size), mode="bilinear",
                                   antialias=True, align_corners=False)[0] for n in names])
    return on_grid(x)


@pytest.fixture(scope="module")
def attacked(lite0: Model) -> tuple[Adversarial, list[str]]:
    """One batched targeted PGD on all sample photos: L-inf 4/255, at most 50 steps in all."""
    names = list(list_samples())
    return pgd(lite0, _photos(names), eps=EPS, target=GOLDFISH, steps=40, refine_steps=10), names


def test_targeted_pgd_reaches_the_target_on_every_sample_photo(attacked, lite0: Model) -> None:  # type: ignore[no-untyped-def]
    result, names = attacked
    failed = [n for n, ok in zip(names, result.success.tolist()) if not ok]
    assert not failed, f"not goldfish: {failed}; steps {result.steps.tolist()}"
    assert (result.new_class == GOLDFISH).all() and (result.original_class != GOLDFISH).all()
    assert (result.steps <= 50).all(), result.steps.tolist()
    # the budget holds exactly, in float32 as a user checks it and in 8-bit levels
    assert (result.images - result.originals).abs().max() <= EPS
    levels = (result.images * 255).round() - (result.originals * 255).round()
    assert levels.abs().max() <= 4 and torch.equal(result.images, on_grid(result.images))
    assert (result.linf <= EPS).all() and (result.linf > 0).all()
    assert all(p.grad is None and p.requires_grad for p in lite0.parameters())
    assert not any(m._forward_hooks or m.training for m in lite0.modules())


def test_saved_pngs_are_still_the_target_when_loaded_back(attacked, lite0: Model, tmp_path) -> None:  # type: ignore[no-untyped-def]
    result, names = attacked
    back = []
    for name, image in zip(names, result.images):
        back.append(load_image(save_png(image, tmp_path / f"{name}.png")))
    back_t = torch.stack(back)
    assert torch.equal(back_t, result.images)  # bitwise: what is saved is what was attacked
    assert (back_t - result.originals).abs().max() <= EPS
    with torch.no_grad():
        pred = lite0(lite0.normalize(back_t)).argmax(1)
    assert (pred == GOLDFISH).all(), pred.tolist()


def test_l2_projection_is_exact_and_keeps_the_box() -> None:
    g = torch.Generator().manual_seed(0)
    orig = on_grid(torch.rand(6, 3, 17, 19, generator=g))
    orig[0] = 1.0  # saturated images: the box cuts the ball
    for eps in (0.5, 1.0, 3.7):
        x = orig + torch.randn(orig.shape, generator=g) * 0.2
        p = project_to_budget(x, orig, eps, "l2")
        delta = p - orig
        assert (delta.flatten(1).norm(dim=1) <= eps).all()  # float32, as a user computes it
        assert (delta.double().flatten(1).norm(dim=1) <= eps).all()  # and float64
        assert p.min() >= 0 and p.max() <= 1
        inside = (x - orig).flatten(1).norm(dim=1) <= eps
        assert torch.equal(p[inside], x[inside].clamp(0, 1))  # points inside only get clamped
        q = quantize(p, orig, eps, "l2")
        assert torch.equal(q, on_grid(q)) and ((q - orig).flatten(1).norm(dim=1) <= eps).all()
        # quantization keeps most of the perturbation (it truncates only what the budget demands)
        assert (q - orig).flatten(1).norm(dim=1).min() > 0.9 * (p - orig).flatten(1).norm(dim=1).min()


def test_linf_projection_is_exact_for_float_edge_cases() -> None:
    g = torch.Generator().manual_seed(1)
    orig = torch.rand(4, 3, 16, 16, generator=g)
    for eps in (EPS, 1 / 3, 1e-3, 0.1):
        x = orig + (torch.rand(orig.shape, generator=g) * 2 - 1) * 3 * eps
        p = project_to_budget(x, orig, eps, "linf")
        assert (p - orig).abs().max() <= eps and p.min() >= 0 and p.max() <= 1
        assert (p - orig).abs().max() >= eps * (1 - 1e-5)  # not shrunk more than needed


def test_l2_pgd_and_untargeted_fgsm(lite0: Model) -> None:
    x = _photos(["cat", "coffee"], 64)
    l2 = pgd(lite0, x, eps=0.5, norm="l2", target=GOLDFISH, steps=30)
    assert (l2.l2 <= 0.5).all() and ((l2.images - x).flatten(1).norm(dim=1) <= 0.5).all()
    assert l2.success.all(), l2.steps.tolist()
    fast = fgsm(lite0, x, eps=EPS)
    assert fast.target is None and (fast.steps == 1).all()
    assert (fast.new_class != fast.original_class).all(), (fast.original_class, fast.new_class)
    assert (fast.success == (fast.new_class != fast.original_class)).all()
    assert (fast.images - x).abs().max() <= EPS


def test_bad_arguments(lite0: Model) -> None:
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(BadArgument, match="norm"):
        pgd(lite0, x, eps=0.1, norm="l1")  # type: ignore[arg-type]
    with pytest.raises(BadArgument, match="eps"):
        pgd(lite0, x, eps=0.0)
    with pytest.raises(BadArgument, match=r"\[0, 1\]"):
        pgd(lite0, x * 3, eps=0.1)


@pytest.mark.parametrize("margin", [0.0, 0.4])
def test_a_margin_makes_the_target_lead_every_other_class(margin: float) -> None:
    """Success (and the early stop) means p_target - max_other p >= margin, read on the saved pixels."""
    torch.manual_seed(0)
    tiny = Model(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 4)).eval(),
                 preprocess=Preprocess(input_size=(16, 16)))
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    r = pgd(tiny, on_grid(x), eps=0.5, target=2, steps=60, margin=margin)
    with torch.no_grad():
        probs = tiny(tiny.normalize(r.images)).softmax(1)
    lead = probs[:, 2] - probs[:, [0, 1, 3]].amax(1)
    assert r.success.all(), lead
    assert (lead >= margin).all() and torch.equal(r.success, lead >= margin)
    if margin:
        with pytest.raises(BadArgument, match=r"^margin=1.5: a probability difference"):
            pgd(tiny, on_grid(x), eps=0.5, target=2, margin=1.5)
