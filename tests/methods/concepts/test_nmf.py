"""NMF by HALS: exact recovery, the error it reports, monotone descent, scikit-learn's solver."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from convscope.errors import BadArgument
from convscope.methods.concepts.nmf import nmf

pytestmark = pytest.mark.usefixtures("one_thread")


def _low_rank(n: int = 300, m: int = 12, k: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, k, generator=g), torch.rand(k, m, generator=g)


def test_exact_low_rank_matrix_is_recovered() -> None:
    w0, h0 = _low_rank()
    found = nmf(w0 @ h0, 3, max_iter=3000, tol=0)
    assert found.relative_error < 2e-3  # float32: the Gram-form error is noisy below ~1e-3
    assert torch.allclose(found.bases.norm(dim=1), torch.ones(3), atol=1e-5)
    assert bool((found.coefficients >= 0).all()) and bool((found.bases >= 0).all())


def test_reported_error_is_the_frobenius_norm_of_the_residual() -> None:
    g = torch.Generator().manual_seed(1)
    a = torch.rand(200, 16, generator=g) ** 3
    found = nmf(a, 4)
    direct = float((a - found.coefficients @ found.bases).norm())
    assert found.error == pytest.approx(direct, rel=1e-4)
    assert found.relative_error == pytest.approx(direct / float(a.norm()), rel=1e-4)


def test_error_never_increases_with_iterations() -> None:
    g = torch.Generator().manual_seed(2)
    a = torch.rand(150, 10, generator=g) ** 2
    errors = [nmf(a, 4, max_iter=i, tol=0, init="random", seed=3).error for i in range(1, 16)]
    assert all(later <= earlier * (1 + 1e-6) for earlier, later in itertools.pairwise(errors))
    assert errors[-1] < errors[0]


def test_fixed_bases_give_back_the_coefficients() -> None:
    w0, h0 = _low_rank(seed=4)
    found = nmf(w0 @ h0, 3, bases=h0, max_iter=3000, tol=0)
    assert torch.equal(found.bases, h0)
    assert torch.allclose(found.coefficients, w0, atol=1e-3)


def test_random_start_is_seeded() -> None:
    a = torch.rand(100, 8, generator=torch.Generator().manual_seed(5))
    one, two = (nmf(a, 3, init="random", seed=7, max_iter=5) for _ in range(2))
    other = nmf(a, 3, init="random", seed=8, max_iter=5)
    assert torch.equal(one.coefficients, two.coefficients)
    assert not torch.equal(one.coefficients, other.coefficients)


@pytest.mark.filterwarnings("ignore:Maximum number of iterations")
def test_as_low_or_lower_error_than_scikit_learn_on_layer_activations(digits_acts: torch.Tensor) -> None:
    """scikit-learn's coordinate descent (what pytorch-grad-cam's DFF runs) on the same matrix."""
    from sklearn.decomposition import NMF

    a = digits_acts.permute(0, 2, 3, 1).reshape(-1, digits_acts.shape[1])
    for k in (3, 6):
        ref = NMF(n_components=k, init="random", random_state=0, max_iter=200)
        coef = ref.fit_transform(a.double().numpy())
        theirs = float(np.linalg.norm(a.double().numpy() - coef @ ref.components_))
        assert nmf(a, k).error <= theirs * (1 + 1e-4), k


@pytest.mark.parametrize("bad, words", [
    (lambda a: nmf(a, 9), "k=9 concepts from 8 channels"),
    (lambda a: nmf(a - 0.5, 2), "non-negative"),
    (lambda a: nmf(a.masked_fill(a > 0.9, float("nan")), 2), "finite"),
    (lambda a: nmf(a[0], 1), "(rows, columns) matrix"),
    (lambda a: nmf(a, 2, max_iter=0), "max_iter"),
])
def test_bad_input_is_refused_in_one_line(bad, words: str) -> None:
    a = torch.rand(40, 8, generator=torch.Generator().manual_seed(6))
    with pytest.raises(BadArgument, match=None) as err:
        bad(a)
    assert words in str(err.value) and "\n" not in str(err.value)
