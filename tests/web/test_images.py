"""The decoded-image LRU behind image references: shared tensors, keys that follow the content,
in-place changes detected, bounds kept, and no route that modifies what it is handed."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastapi.testclient import TestClient
from PIL import Image

from convscope.data.images import load_image
from convscope.model.digest import tensor_digest
from convscope.web.images import resolve_image
from convscope.web.state import Recent


def _digest_of(picture: torch.Tensor) -> str:
    """The content hash computed afresh, on a copy no cache knows."""
    return tensor_digest(picture.clone())


def test_a_sample_is_decoded_once_and_shared(app: Any) -> None:
    first = resolve_image(app.state.cs, "sample:cat")
    again = resolve_image(app.state.cs, "sample:cat")
    assert again is first
    assert torch.equal(first, load_image("sample:cat"))
    assert app.state.cs.digest(first) == _digest_of(first)


def test_a_tensor_changed_in_place_is_decoded_again(app: Any) -> None:
    state = app.state.cs
    shared = resolve_image(state, "sample:cat")
    before = state.digest(shared)
    shared.mul_(0.5)  # what no caller may do; the cache notices it
    assert state.digest(shared) == _digest_of(shared) != before
    fresh = resolve_image(state, "sample:cat")
    assert fresh is not shared and torch.equal(fresh, load_image("sample:cat"))
    assert resolve_image(state, "sample:cat") is fresh and state.digest(fresh) == before


def test_a_folder_file_changed_on_disk_is_decoded_again(make_app: Any, tmp_path: Path) -> None:
    folder = tmp_path / "pics"
    folder.mkdir()
    path = folder / "a.png"
    Image.fromarray(np.zeros((6, 7, 3), np.uint8)).save(path)
    app = make_app(models=("digits_cnn",), images=[folder])
    ref = f"folder:{folder.name}/a.png"
    before = resolve_image(app.state.cs, ref)
    assert resolve_image(app.state.cs, ref) is before and float(before.max()) == 0.0
    Image.fromarray(np.full((6, 7, 3), 255, np.uint8)).save(path)
    stamp = path.stat().st_mtime_ns
    os.utime(path, ns=(stamp + 10**9, stamp + 10**9))  # a new mtime even on a coarse clock
    after = resolve_image(app.state.cs, ref)
    assert float(after.min()) == 1.0
    assert app.state.cs.digest(after) != app.state.cs.digest(before)


def test_an_upload_is_cached_by_its_hash(make_app: Any) -> None:
    app = make_app(models=("digits_cnn",))
    import io

    buf = io.BytesIO()
    Image.fromarray(np.arange(5 * 4 * 3, dtype=np.uint8).reshape(5, 4, 3)).save(buf, "PNG")
    with TestClient(app, base_url="http://127.0.0.1") as c:
        ref = c.post("/api/upload", files={"file": ("u.png", buf.getvalue(), "image/png")}).json()["image"]
    first = resolve_image(app.state.cs, ref)
    assert resolve_image(app.state.cs, ref) is first
    assert torch.equal(first, load_image(buf.getvalue()))


def test_the_lru_keeps_its_bounds() -> None:
    cache: Recent[str, torch.Tensor] = Recent(2, 3 * 4 * 100, weigh=lambda t: t.numel() * t.element_size())
    loads: list[str] = []

    def loader(name: str, size: int) -> Any:
        def load() -> torch.Tensor:
            loads.append(name)
            return torch.zeros(size)
        return load

    a = cache.get("a", loader("a", 100))
    cache.get("b", loader("b", 100))
    assert cache.get("a", loader("a", 100)) is a  # a is now the most recent
    cache.get("c", loader("c", 100))  # over two items: b, the least recent, goes
    assert len(cache) == 2 and loads == ["a", "b", "c"]
    cache.get("b", loader("b", 100))
    assert loads[-1] == "b"
    cache.get("d", loader("d", 250))  # over the bytes: only d stays
    assert len(cache) == 1
    cache.get("huge", loader("huge", 1000))  # larger than the whole cache: handed out, not kept
    assert len(cache) == 1 and cache.get("d", loader("d", 250)) is not None and loads[-1] == "huge"


def test_threads_resolving_at_once_get_the_same_pixels(app: Any) -> None:
    app.state.cs.decoded.clear()
    got: list[torch.Tensor] = []
    lock = threading.Lock()

    def resolve() -> None:
        picture = resolve_image(app.state.cs, "sample:cat")
        with lock:
            got.append(picture)

    threads = [threading.Thread(target=resolve) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    want = load_image("sample:cat")
    assert len(got) == 6 and all(torch.equal(g, want) for g in got)
    assert any(resolve_image(app.state.cs, "sample:cat") is g for g in got)  # one of them was kept


def test_routes_leave_the_shared_image_as_it_was(app: Any, client: TestClient, image_folder: Path) -> None:
    refs = ["sample:cat", f"folder:{image_folder.name}/noise.png"]
    shared = {ref: resolve_image(app.state.cs, ref) for ref in refs}
    versions = {ref: t._version for ref, t in shared.items()}
    for ref in refs:
        assert client.get("/api/predict", params={"image": ref, "k": 3}).status_code == 200
        assert client.get("/api/images/check", params={"image": ref}).status_code == 200
        assert client.get("/api/explain/image.png", params={"image": ref}).status_code == 200
        for method in ("gradcam", "saliency"):
            body = {"image": ref, "method": method, "model": "efficientnet_lite0", "wait": True}
            reply = client.post("/api/explain", json=body)
            assert reply.status_code == 200 and reply.json()["status"] == "done"
    for ref in refs:
        assert resolve_image(app.state.cs, ref) is shared[ref]
        assert shared[ref]._version == versions[ref]
    assert torch.equal(shared["sample:cat"], load_image("sample:cat"))
