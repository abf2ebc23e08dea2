"""In-memory pixels (numpy arrays, torch tensors) to the one image form: float32 (3, H, W) in [0, 1].

Decoded files go through here too (``images.py`` turns a PIL image into an array first), so the
rules for dtypes, channels and value ranges are written once:

- dtype gives the scale: uint8 / 255, uint16 / 65535, bool as 0 / 1, floats as they are but only
  if finite and inside [0, 1] (refused otherwise: silently clipping would hide a normalization
  bug upstream). Other integer dtypes are ambiguous (is int64 0..255 or 0..65535?) and refused.
- channels: 1 (gray) is repeated to RGB, 2 is gray + alpha, 3 is RGB, 4 is RGBA. Alpha is
  composited on white, for the reason given in ``images.py``.
- layout: numpy arrays are (H, W) or (H, W, C) as PIL and skimage write them; torch tensors are
  (H, W) or (C, H, W) as PyTorch writes them. Anything else is refused rather than guessed.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import BadImage

_CHANNELS = (1, 2, 3, 4)
_INT_SCALE = {torch.uint8: 255.0, torch.bool: 1.0}
if hasattr(torch, "uint16"):
    _INT_SCALE[torch.uint16] = 65535.0


def from_array(array: np.ndarray, name: str = "numpy array") -> torch.Tensor:
    """An (H, W) or (H, W, C) numpy image as a float32 (3, H, W) tensor in [0, 1]."""
    if not isinstance(array, np.ndarray):
        raise BadImage(f"{name}: expected a numpy array, got {type(array).__name__}")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in _CHANNELS:
        hint = ""
        if array.ndim == 3 and array.shape[0] in _CHANNELS:
            hint = " (channels-first? use a.transpose(1, 2, 0), or pass a torch tensor)"
        elif array.ndim == 4:
            hint = " (a batch? pass one image at a time)"
        raise BadImage(f"{name} has shape {array.shape}; expected (H, W) or (H, W, C) with C in "
                       f"1..4{hint}")
    _check_not_empty(array.shape[:2], array.shape, name)
    if array.dtype == np.uint16:
        values = torch.from_numpy(array.astype(np.float32) / 65535.0)
    elif array.dtype == np.uint8 or array.dtype == np.bool_:
        values = torch.from_numpy(array.astype(np.float32))
        if array.dtype == np.uint8:
            values /= 255.0
    elif np.issubdtype(array.dtype, np.floating):
        values = torch.from_numpy(np.asarray(array, dtype=np.float32).copy())
        _check_float_range(values, name)
    else:
        raise BadImage(f"{name} has dtype {array.dtype}; expected uint8, uint16, bool or float in "
                       "[0, 1] (convert with a.astype(np.uint8) if values are 0..255)")
    return _to_rgb(values.permute(2, 0, 1))


def from_tensor(tensor: torch.Tensor, name: str = "torch tensor") -> torch.Tensor:
    """An (H, W) or (C, H, W) tensor image as a new float32 (3, H, W) tensor in [0, 1].

    The result stays on the input's device and never shares memory or autograd history with it.
    """
    x = tensor.detach()
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[0] not in _CHANNELS:
        hint = ""
        if x.ndim == 3 and x.shape[2] in _CHANNELS:
            hint = " (channels-last? use t.permute(2, 0, 1))"
        elif x.ndim == 4:
            hint = " (a batch? pass one image, e.g. t[0])"
        raise BadImage(f"{name} has shape {tuple(tensor.shape)}; expected (H, W) or (C, H, W) "
                       f"with C in 1..4{hint}")
    _check_not_empty(x.shape[1:], tuple(tensor.shape), name)
    if x.dtype in _INT_SCALE:
        values = x.to(torch.float32) / _INT_SCALE[x.dtype]
    elif x.is_floating_point():
        values = x.to(torch.float32, copy=True)
        _check_float_range(values, name)
    else:
        raise BadImage(f"{name} has dtype {str(x.dtype).replace('torch.', '')}; expected uint8, "
                       "bool or float in [0, 1] (convert with t.to(torch.uint8) if values are "
                       "0..255)")
    return _to_rgb(values)


def _check_not_empty(spatial: tuple[int, ...], shape: tuple[int, ...], name: str) -> None:
    if min(spatial) == 0:
        raise BadImage(f"{name} has shape {tuple(shape)}; an image needs at least one pixel")


def _check_float_range(values: torch.Tensor, name: str) -> None:
    """Refuse NaN / inf and values outside [0, 1]: both mean the input is not an image yet."""
    low_high = torch.aminmax(values)  # one pass; NaN fails both comparisons, inf the range
    if bool(low_high.min >= 0.0) and bool(low_high.max <= 1.0):
        return
    finite = torch.isfinite(values)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise BadImage(f"{name} has {bad} NaN or infinite values; replace them (e.g. "
                       "nan_to_num) before loading")
    low, high = float(values.min()), float(values.max())
    if low < 0.0 or high > 1.0:
        raise BadImage(f"{name} has float values in [{low:.4g}, {high:.4g}], outside [0, 1]; "
                       "rescale it to [0, 1] (undo any mean/std normalization) or pass uint8")


def _to_rgb(values: torch.Tensor) -> torch.Tensor:
    """(1|2|3|4, H, W) float in [0, 1] -> (3, H, W): gray repeated, alpha composited on white."""
    channels = values.shape[0]
    if channels in (2, 4):
        color, alpha = values[:-1], values[-1:]
        values = color * alpha + (1.0 - alpha)
    if values.shape[0] == 1:
        values = values.expand(3, -1, -1)
    return values.contiguous()
