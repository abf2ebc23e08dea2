"""load_image on numpy arrays and torch tensors: every dtype and layout, and every refusal."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from convscope.data import load_image
from convscope.errors import BadImage

RNG = np.random.default_rng(0)
U8 = RNG.integers(0, 256, (4, 5, 3), dtype=np.uint8)
RGB = torch.from_numpy(U8).permute(2, 0, 1).float() / 255  # the expected (3, 4, 5) image


def _refused(source: object, *words: str) -> None:
    with pytest.raises(BadImage) as info:
        load_image(source)  # type: ignore[arg-type]
    msg = str(info.value)
    assert "\n" not in msg
    for word in words:
        assert word in msg, msg


# ---------------------------------------------------------------- numpy


@pytest.mark.parametrize(
    "array",
    [U8, U8.astype(np.uint16) * 257, U8 / 255.0, (U8 / 255.0).astype(np.float32),
     (U8 / 255.0).astype(np.float16), np.asfortranarray(U8), U8[::-1][::-1]],
    ids=["uint8", "uint16", "float64", "float32", "float16", "fortran", "strided"],
)
def test_numpy_rgb_dtypes(array: np.ndarray) -> None:
    t = load_image(array)
    assert t.dtype == torch.float32 and t.shape == (3, 4, 5)
    assert torch.allclose(t, RGB, atol=1e-3)


@pytest.mark.parametrize("shape", [(4, 5), (4, 5, 1)])
def test_numpy_gray(shape: tuple[int, ...]) -> None:
    gray = U8[..., 0].reshape(shape)
    t = load_image(gray)
    assert t.shape == (3, 4, 5)
    assert torch.equal(t[0], torch.from_numpy(U8[..., 0]).float() / 255)
    assert torch.equal(t[0], t[2])


def test_numpy_bool() -> None:
    mask = np.eye(3, dtype=bool)
    assert torch.equal(load_image(mask)[1], torch.eye(3))


def test_numpy_rgba_on_white() -> None:
    a = np.zeros((1, 2, 4), dtype=np.uint8)
    a[0, 1] = (0, 0, 255, 255)
    t = load_image(a)
    assert torch.equal(t[:, 0, 0], torch.ones(3))
    assert torch.equal(t[:, 0, 1], torch.tensor([0.0, 0.0, 1.0]))


def test_numpy_gray_alpha() -> None:
    a = np.array([[[0.5, 0.5]]], dtype=np.float32)
    assert torch.allclose(load_image(a), torch.full((3, 1, 1), 0.75))


def test_numpy_input_not_shared() -> None:
    a = np.full((2, 2, 3), 0.5, dtype=np.float32)
    t = load_image(a)
    a[:] = 0
    assert float(t.min()) == 0.5


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_numpy_nonfinite(value: float) -> None:
    a = np.zeros((3, 3, 3), dtype=np.float32)
    a[1, 1, 1] = value
    _refused(a, "numpy array", "NaN or infinite")


@pytest.mark.parametrize("value", [-0.1, 1.5, 255.0])
def test_numpy_out_of_range(value: float) -> None:
    a = np.zeros((3, 3), dtype=np.float64)
    a[0, 0] = value
    _refused(a, "numpy array", "outside [0, 1]")


@pytest.mark.parametrize(
    ("shape", "hint"),
    [((5,), ""), ((2, 3, 4, 5), "batch"), ((3, 8, 8), "channels-first"), ((4, 4, 7), "")],
)
def test_numpy_bad_shape(shape: tuple[int, ...], hint: str) -> None:
    _refused(np.zeros(shape, np.uint8), "numpy array", str(shape), hint)


@pytest.mark.parametrize("shape", [(0, 4, 3), (4, 0), (0, 0)])
def test_numpy_empty(shape: tuple[int, ...]) -> None:
    _refused(np.zeros(shape, np.uint8), "numpy array", "at least one pixel")


@pytest.mark.parametrize("dtype", [np.int64, np.int8, np.uint32, np.complex64])
def test_numpy_ambiguous_dtype(dtype: type) -> None:
    _refused(np.zeros((2, 2, 3), dtype), "numpy array", "dtype")


# ---------------------------------------------------------------- torch


@pytest.mark.parametrize(
    "tensor",
    [RGB, (RGB * 255).round().to(torch.uint8), RGB.double(), RGB.half(), RGB.bfloat16()],
    ids=["float32", "uint8", "float64", "float16", "bfloat16"],
)
def test_tensor_rgb_dtypes(tensor: torch.Tensor) -> None:
    t = load_image(tensor)
    assert t.dtype == torch.float32 and t.shape == (3, 4, 5)
    assert torch.allclose(t, RGB, atol=4e-3)


@pytest.mark.skipif(not hasattr(torch, "uint16"), reason="no torch.uint16")
def test_tensor_uint16() -> None:
    t = torch.tensor([[0, 65535]], dtype=torch.uint16)
    assert torch.equal(load_image(t)[0], torch.tensor([[0.0, 1.0]]))


@pytest.mark.parametrize("shape", [(4, 5), (1, 4, 5)])
def test_tensor_gray(shape: tuple[int, ...]) -> None:
    t = load_image(RGB[0].reshape(shape))
    assert t.shape == (3, 4, 5) and torch.equal(t[1], RGB[0])


def test_tensor_bool_and_rgba() -> None:
    assert torch.equal(load_image(torch.eye(2, dtype=torch.bool))[0], torch.eye(2))
    rgba = torch.zeros(4, 1, 1)  # black, fully transparent -> white
    assert torch.equal(load_image(rgba), torch.ones(3, 1, 1))


def test_tensor_is_copied_and_detached() -> None:
    x = RGB.clone().requires_grad_(True)
    t = load_image(x)
    assert not t.requires_grad and t.grad_fn is None
    with torch.no_grad():
        x.zero_()
    assert torch.equal(t, RGB)


def test_tensor_nonfinite_and_range() -> None:
    bad = RGB.clone()
    bad[0, 0, 0] = float("nan")
    _refused(bad, "torch tensor", "NaN")
    _refused(RGB * 2 - 0.5, "torch tensor", "outside [0, 1]")


@pytest.mark.parametrize(
    ("shape", "hint"), [((5,), ""), ((1, 3, 4, 4), "batch"), ((8, 8, 3), "channels-last")]
)
def test_tensor_bad_shape(shape: tuple[int, ...], hint: str) -> None:
    _refused(torch.zeros(shape), "torch tensor", str(shape), hint)


def test_tensor_empty_and_dtype() -> None:
    _refused(torch.zeros(3, 0, 4), "torch tensor", "at least one pixel")
    _refused(torch.zeros(3, 2, 2, dtype=torch.int64), "torch tensor", "int64")
