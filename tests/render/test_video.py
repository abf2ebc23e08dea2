"""Pictures of a clip's map: one colour scale for all frames, a strip and an animation."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from convscope.errors import BadArgument
from convscope.render.video import animation_bytes, clip_levels, clip_overlays, frame_indices, frame_strip


def _clip() -> tuple[torch.Tensor, torch.Tensor]:
    frames = torch.full((3, 4, 8, 8), 0.5)
    heat = torch.zeros(1, 4, 8, 8)
    heat[0, 1, 2:4, 2:4] = 1.0  # all evidence in frame 1
    heat[0, 3, 5, 5] = 0.25
    return frames, heat


def test_one_scale_for_the_whole_clip() -> None:
    _, heat = _clip()
    levels = clip_levels(heat, clip_percentile=100)
    assert float(levels[0, 1].max()) == 1.0 and float(levels[0, 0].max()) == 0.0
    assert float(levels[0, 3, 5, 5]) == pytest.approx(0.25)  # not stretched to 1 on its own frame


def test_a_quiet_frame_stays_as_it_is() -> None:
    frames, heat = _clip()
    pictures = clip_overlays(frames, heat, clip_percentile=100)
    assert len(pictures) == 4
    quiet, loud = (torch.from_numpy(np.asarray(p, dtype=np.float32)).flatten(0, 1)
                   for p in (pictures[0], pictures[1]))
    assert float((quiet - quiet[0]).abs().max()) == 0.0  # one colour: the zero of the map everywhere
    assert float((loud - loud[0]).abs().max()) > 50


def test_strip_and_animation() -> None:
    frames, heat = _clip()
    strip = frame_strip(frames, heat, max_frames=3, tile=32)
    assert strip.width > strip.height
    assert frame_indices(10, 3) == [0, 4, 9] and frame_indices(2, 8) == [0, 1]
    pictures = clip_overlays(frames, heat)
    for fmt in ("gif", "webp"):
        with Image.open(io.BytesIO(animation_bytes(pictures, format=fmt))) as animated:
            assert animated.n_frames == 4 and animated.info.get("loop") == 0


def test_mismatched_clip_and_map_are_refused() -> None:
    frames, heat = _clip()
    with pytest.raises(BadArgument, match="same T"):
        clip_overlays(frames, heat[:, :3])
    with pytest.raises(BadArgument, match="'gif' or 'webp'"):
        animation_bytes(clip_overlays(frames, heat), format="mp4")  # type: ignore[arg-type]
