"""The leaderboard page: the form, the job (the task's numbers, cached), 4xx before anything runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import convscope

pytestmark = pytest.mark.usefixtures("one_thread")
SETTINGS = {"dataset": "mnist5k", "methods": "saliency,gradcam", "metrics": "deletion_auc,insertion_auc",
            "images": 6, "steps": 3, "batch_size": 3}


def test_the_job_gives_the_tasks_numbers_and_files_and_is_cached(client: TestClient, app: Any) -> None:
    page = client.get("/leaderboard?dataset=mnist5k&images=6")
    assert page.status_code == 200 and 'id="board-form"' in page.text
    assert 'href="/leaderboard" class="active"' in page.text  # its navigation entry
    answer = client.post("/api/leaderboard", json={**SETTINGS, "wait": True})
    assert answer.status_code == 200, answer.text
    job = answer.json()
    assert job["status"] == "done" and job["kind"] == "leaderboard"
    data = job["data"]
    model = app.state.cs.model("digits_cnn").model
    board = convscope.leaderboard(model, "mnist5k", "saliency,gradcam", SETTINGS["metrics"], images=6,
                                  steps=3, batch_size=3)
    assert [r["mean"] for r in data["rows"]] == [r["mean"] for r in board.rows()]
    assert data["header"][:2] == ["method", "s/image"] and len(data["table"]) == 2
    assert data["statements"] == board.statements()
    png = client.get(job["files"]["leaderboard.png"])
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
    assert client.get(job["files"]["leaderboard.csv"]).text.startswith("method,metric")
    again = client.post("/api/leaderboard", json={**SETTINGS, "wait": True}).json()
    assert again["message"] == "cached" and again["data"]["rows"] == data["rows"]


@pytest.mark.parametrize(("settings", "message"), [
    ({"methods": "gradient"}, "method 'gradient' is not known"),
    ({"metrics": "energy"}, "metric 'energy' needs a box or mask"),
    ({"dataset": "../etc"}, "dataset='../etc': choose mnist5k, samples or a served folder"),
    ({"images": 0}, "images"),
    ({"colour": "red"}, "leaderboard has no setting 'colour'"),
])
def test_bad_settings_are_a_400_before_anything_runs(client: TestClient, settings: dict[str, Any],
                                                     message: str) -> None:
    before = len(client.get("/api/jobs").json()["jobs"])
    answer = client.post("/api/leaderboard", json={**SETTINGS, **settings})
    assert answer.status_code == 400 and message in answer.json()["error"]
    assert len(client.get("/api/jobs").json()["jobs"]) == before


def test_localization_metrics_take_a_regions_csv_from_the_served_folder(make_app: Any,
                                                                       tmp_path: Path) -> None:
    """Without regions a localization metric is a one-line 400; with the CSV inside the served
    folder it runs, and gives the task's numbers for the same file."""
    from fastapi.testclient import TestClient
    from PIL import Image

    from convscope.data.datasets import load_mnist5k

    folder = tmp_path / "digits"
    images, labels = load_mnist5k()
    for digit in (3, 7):
        (folder / str(digit)).mkdir(parents=True)
        first = int((labels == digit).nonzero()[0])
        Image.fromarray((images[first, 0] * 255).byte().numpy()).save(folder / str(digit) / "a.png")
    (folder / "boxes.csv").write_text("image,top,left,bottom,right\n3/a.png,0,0,14,28\n7/a.png,4,4,24,24\n")
    app = make_app(models=("digits_cnn",), images=[folder])
    settings = {"dataset": "folder:digits", "methods": "gradcam", "metrics": "relevance_mass,pointing_game",
                "images": 2, "steps": 3, "batch_size": 2}
    with TestClient(app, base_url="http://127.0.0.1") as client:
        refused = client.post("/api/leaderboard", json=settings)
        assert refused.status_code == 400
        assert "metric 'relevance_mass' needs a box or mask" in refused.json()["error"]
        assert "\n" not in refused.json()["error"]
        for bad, status in (("nope.csv", 400), ("../x.csv", 403)):
            assert client.post("/api/leaderboard", json={**settings, "regions": bad}).status_code == status
        on_mnist = client.post("/api/leaderboard",
                               json={**settings, "dataset": "mnist5k", "regions": "boxes.csv"})
        assert on_mnist.status_code == 400 and "served folder" in on_mnist.json()["error"]
        answer = client.post("/api/leaderboard", json={**settings, "regions": "boxes.csv", "wait": True})
        assert answer.status_code == 200, answer.text
        data = answer.json()["data"]
    board = convscope.leaderboard(app.state.cs.model("digits_cnn").model, folder, "gradcam",
                                  "relevance_mass,pointing_game", regions=folder / "boxes.csv", steps=3,
                                  batch_size=2)
    assert [r["mean"] for r in data["rows"]] == [r["mean"] for r in board.rows()]
    assert {r["metric"] for r in data["rows"]} == {"relevance_mass", "pointing_game"}
