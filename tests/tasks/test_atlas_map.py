"""The dataset map's task layer on a real scan of MNIST digits with digits_cnn: projections of
every point, Procrustes alignment, tiles, columns, search, rows, confusion and export."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from sklearn.metrics import confusion_matrix

from convscope.data.atlas import Atlas
from convscope.errors import BadArgument
from convscope.methods.dataset.projection import project
from convscope.model import load_model
from convscope.render.tiles import thumbnail_tile
from convscope.tasks import atlas_map as am
from convscope.tasks.scan import scan_dataset
from tests.tasks.digits_atlas import digits_atlas

BROKEN = 12  # 3/broken.png sorts after 3/d3_0..3: index 3 * 4 + 0


@pytest.fixture(scope="module")
def atlas(tmp_path_factory: pytest.TempPathFactory) -> Atlas:
    return Atlas.open(digits_atlas(tmp_path_factory.mktemp("maps")))


def test_pca_map_has_every_point_and_matches_scikit_learn(atlas: Atlas) -> None:
    calls: list[tuple[int, int]] = []
    made = am.map_coords(atlas, "flatten", "pca", progress=lambda d, t: calls.append((d, t)))
    assert made.coords.shape == (41, 2) and made.coords.dtype == np.float32
    assert made.projected == 40 and calls[-1] == (2, 2)
    assert np.isnan(made.coords[BROKEN]).all()
    keep = np.arange(41) != BROKEN
    assert np.isfinite(made.coords[keep]).all()
    emb = atlas.embeddings("flatten")[keep]
    reference = PCA(n_components=2, svd_solver="full").fit_transform(emb.astype(np.float64))
    np.testing.assert_allclose(made.coords[keep], reference, rtol=1e-4, atol=1e-4)


def test_tsne_map_is_the_library_projection_of_the_valid_rows(atlas: Atlas) -> None:
    keep = np.arange(41) != BROKEN
    emb = torch.from_numpy(atlas.embeddings("block3")[keep])
    quick = {"n_iter": 50, "early_exaggeration_iter": 20, "negative_gradient_method": "bh"}
    made = am.map_coords(atlas, "block3", "tsne", seed=3, **quick)
    expected = project(emb, "tsne", seed=3, **quick).numpy()
    np.testing.assert_array_equal(made.coords[keep], expected)
    assert np.isnan(made.coords[BROKEN]).all()
    calls: list[tuple[int, int]] = []
    reported = am.map_coords(atlas, "block3", "tsne", seed=3, progress=lambda d, t: calls.append((d, t)),
                             **quick)
    assert np.array_equal(reported.coords, made.coords, equal_nan=True)  # reporting changes nothing
    assert calls[0] == (0, 72) and calls[-1] == (72, 72) and len(calls) == 2 + 70 // am.TSNE_EVERY + 1
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)

    class Stop(Exception):
        pass

    def cancel_at_first_iterations(done: int, total: int) -> None:
        if done > 1:
            raise Stop

    with pytest.raises(Stop):  # a cancel lands inside the optimization
        am.map_coords(atlas, "block3", "tsne", progress=cancel_at_first_iterations, **quick)
    with pytest.raises(BadArgument, match="use one of pca, tsne, umap"):
        am.map_coords(atlas, "block3", "mds")
    with pytest.raises(BadArgument, match="not in atlas"):
        am.map_coords(atlas, "nope", "pca")


def test_alignment_recovers_a_known_similarity_with_reflection() -> None:
    rng = np.random.default_rng(0)
    coords = rng.normal(size=(50, 2)).astype(np.float32)
    coords[7] = np.nan
    angle = 0.7
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    rotation = rotation @ np.diag([1.0, -1.0])  # a mirrored map (t-SNE and UMAP flip freely)
    reference = (2.5 * coords.astype(np.float64) @ rotation + np.array([3.0, -1.0]))
    order = rng.permutation(50)  # the reference lists the same images in another order
    ref_rows = np.empty(50, dtype=np.int64)
    ref_rows[order] = np.arange(50)
    shuffled = reference[order]
    done = am.align_coords(coords, shuffled, np.arange(50), ref_rows)
    assert done.shared == 49 and done.rms < 1e-6 and done.scale == pytest.approx(2.5)
    np.testing.assert_allclose(done.rotation, rotation, atol=1e-9)
    np.testing.assert_allclose(done.coords[np.arange(50) != 7], reference[np.arange(50) != 7], atol=1e-5)
    assert np.isnan(done.coords[7]).all()
    with pytest.raises(BadArgument, match="share 2 projected images"):
        am.align_coords(coords, shuffled, np.arange(2), ref_rows[:2])


def test_alignment_between_two_atlases_of_overlapping_images(tmp_path: Path) -> None:
    full = Atlas.open(digits_atlas(tmp_path, "full"))
    shutil.rmtree(tmp_path / "full-images" / "0")  # the second scan lacks the zeros: indices shift
    with pytest.warns(UserWarning, match="scan skipped 1"):
        part = scan_dataset(load_model("digits_cnn"), tmp_path / "full-images", tmp_path / "part",
                            layers=["flatten"], k=1)
    mine, theirs = am.shared_points(part, full)
    assert np.array_equal(mine, np.arange(37)) and np.array_equal(theirs, np.arange(4, 41))
    reference = am.map_coords(full, "flatten", "pca").coords
    moved = am.map_coords(part, "flatten", "pca").coords
    done = am.align_coords(moved, reference, mine, theirs)
    assert done.shared == 36  # the broken file is in both but projected in neither
    # the same digits_cnn embeddings, PCA'd with and without the zeros: close after alignment
    spread = np.nanstd(reference[4:], axis=0).mean()
    assert done.rms < 0.5 * spread
    assert np.nanmean(np.abs(done.coords - reference[4:])) < np.nanmean(np.abs(moved - reference[4:]))
    assert am.align_coords(reference, reference, *am.shared_points(full, full)).rms < 1e-4


def test_tiles_hold_the_stored_thumbnails_in_index_order(atlas: Atlas) -> None:
    side = am.tile_side(atlas)
    assert side == 1024 // 28 and am.tile_count(atlas) == 1
    thumbs = am.tile_thumbnails(atlas, 0)
    assert np.array_equal(thumbs, atlas.thumbnails())
    picture = np.asarray(thumbnail_tile(thumbs, side))
    assert picture.shape == (28 * 2, 28 * side, 3)  # 41 thumbnails fill two rows of 36
    t = 28
    for i in (0, 5, 35, 36, 40):
        row, col = divmod(i, side)
        assert np.array_equal(picture[row * t:(row + 1) * t, col * t:(col + 1) * t], thumbs[i])
    assert np.array_equal(am.thumbnail(atlas, 40), thumbs[40])
    for bad in (-1, 1):
        with pytest.raises(BadArgument, match=r"outside atlas 'digits' \(0..0\)"):
            am.tile_thumbnails(atlas, bad)
    with pytest.raises(BadArgument, match="outside atlas"):
        am.thumbnail(atlas, 41)


def test_columns_are_little_endian_copies_of_the_scan(atlas: Atlas) -> None:
    labels = np.frombuffer(am.column_bytes(atlas, "labels"), dtype="<i4")
    preds = np.frombuffer(am.column_bytes(atlas, "predictions"), dtype="<i4")
    conf = np.frombuffer(am.column_bytes(atlas, "confidence"), dtype="<f4")
    assert labels.tolist() == atlas.labels().tolist() and preds.tolist() == atlas.predictions().tolist()
    assert preds[BROKEN] == -1 and np.isnan(conf[BROKEN])
    assert np.array_equal(conf[np.arange(41) != BROKEN],
                          atlas.probabilities()[np.arange(41) != BROKEN])
    assert (preds == labels).mean() > 0.9  # digits_cnn reads these digits
    with pytest.raises(BadArgument, match="use one of labels, predictions, confidence"):
        am.column_bytes(atlas, "sources")


def test_search_by_label_name_and_file_name(atlas: Atlas) -> None:
    assert am.search(atlas, "7").tolist() == list(range(29, 33))  # label "7" (file names have d7_)
    assert am.search(atlas, "d2_1").tolist() == [9]
    assert am.search(atlas, "BROKEN").tolist() == [BROKEN]  # case-insensitive
    assert am.search(atlas, "d%_0").tolist() == []  # % and _ are literal, not wildcards
    with pytest.raises(BadArgument, match="search: give"):
        am.search(atlas, "  ")


def test_rows_confusion_and_cells(atlas: Atlas) -> None:
    rows = am.item_rows(atlas, [40, BROKEN, 0], prediction_names=[str(d) for d in range(10)])
    assert [r["index"] for r in rows] == [40, BROKEN, 0]
    assert rows[0]["source"].endswith("9/d9_3.png") and rows[0]["label"] == 9 and rows[0]["label_name"] == "9"
    assert rows[1]["prediction"] is None and rows[1]["confidence"] is None and rows[1]["status"] == "skipped"
    assert rows[2]["prediction_name"] == str(rows[2]["prediction"])
    for bad, message in ((41, "outside atlas"), (-1, "outside atlas"), (True, "not an integer"),
                         ("3", "not an integer")):
        with pytest.raises(BadArgument, match=message):
            am.item_rows(atlas, [0, bad])
    matrix = am.confusion(atlas)
    labels, preds = atlas.labels(), atlas.predictions()
    seen = preds >= 0
    assert np.array_equal(matrix, confusion_matrix(labels[seen], preds[seen], labels=range(10)))
    for t, p in ((3, 3), *zip(*np.nonzero(matrix - np.diag(np.diag(matrix))), strict=True)):
        cell = am.confusion_cell(atlas, int(t), int(p))
        assert len(cell) == matrix[t, p] and (labels[cell] == t).all() and (preds[cell] == p).all()
    with pytest.raises(BadArgument, match="outside the confusion matrix"):
        am.confusion_cell(atlas, 10, 0)


def test_export_csv_and_json(atlas: Atlas) -> None:
    coords = am.map_coords(atlas, "flatten", "pca").coords
    chosen = [3, BROKEN, 20]
    records = json.loads(am.export_selection(atlas, chosen, coords, "json"))
    assert [r["index"] for r in records] == chosen
    assert records[0]["x"] == pytest.approx(float(coords[3, 0])) and records[1]["x"] is None
    assert records[2]["path"] == atlas.sources()[20] and records[2]["label"] == 4
    table = list(csv.DictReader(io.StringIO(am.export_selection(atlas, chosen, coords, "csv").decode())))
    assert list(table[0]) == list(am.EXPORT_COLUMNS)
    assert [float(r["y"]) if r["y"] else None for r in table] == [
        pytest.approx(float(coords[3, 1])), None, pytest.approx(float(coords[20, 1]))]
    with pytest.raises(BadArgument, match="use one of csv, json"):
        am.export_selection(atlas, chosen, coords, "xml")


def test_info(atlas: Atlas) -> None:
    info = am.map_info(atlas)
    assert info["n"] == 41 and info["layers"] == ["block3", "flatten"] and info["skipped"] == 1
    assert info["class_names"] == [str(d) for d in range(10)] and info["model"] == "digits_cnn"
    assert (info["thumb_size"], info["tile_side"], info["tile_count"]) == (28, 36, 1)
