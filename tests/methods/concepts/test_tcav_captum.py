"""Captum's TCAV, fed our CAVs, gives our scores on the same inputs (the reference library)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from captum.concept import TCAV, Classifier, Concept
from torch.utils.data import DataLoader

from convscope.data.planted import CUE_CLASS, class_set, concept_set, random_set
from convscope.methods.concepts.tcav import tcav
from convscope.model import load_model

LAYERS = ["block3", "block4"]


class GivenCavs(Classifier):
    """Captum's classifier interface, answering each concept pair with the CAV we fitted."""

    def __init__(self, cavs: dict[str, torch.Tensor], concepts: int, runs: int) -> None:
        self.cavs, self.concepts, self.runs = cavs, concepts, runs
        self.layer = ""
        self._weights = torch.zeros(0)
        self._classes: list[int] = []

    def train_and_eval(self, dataloader: DataLoader, **kwargs: Any) -> dict[str, Any]:
        ids = torch.cat([labels for _, labels in dataloader]).unique().tolist()  # (concept, run)
        row = ids[0] if ids[0] < self.concepts else self.concepts  # the reference random: last row
        run = ids[1] - self.concepts - 1  # ids: concepts, reference random, then the runs
        v = self.cavs[self.layer][row, run]
        self._weights, self._classes = torch.stack([v, -v]), [ids[0], ids[1]]
        return {"accs": torch.tensor(1.0)}

    def weights(self) -> torch.Tensor:
        return self._weights

    def classes(self) -> list[int]:
        return self._classes


def test_captum_gives_the_same_scores_on_our_cavs(tmp_path: Path) -> None:
    torch.set_num_threads(2)
    model = load_model("digits_planted")
    prep = model.preprocess
    concept = prep(concept_set(30).images)
    randoms = [prep(random_set(i, n=30).images) for i in range(5)]
    inputs = prep(class_set(CUE_CLASS, n=30).images)
    ours = tcav(model, {"stripes": concept}, randoms, inputs, CUE_CLASS, LAYERS)

    sets = [Concept(0, "stripes", DataLoader(concept, batch_size=16))]
    sets += [Concept(1 + i, f"random{i}", DataLoader(r, batch_size=16)) for i, r in enumerate(randoms)]
    experiments = [[sets[0], run] for run in sets[2:]] + [[sets[1], run] for run in sets[2:]]
    for li, layer in enumerate(LAYERS):  # one layer per Captum object: the classifier knows which
        given = GivenCavs(ours.cavs, concepts=1, runs=4)
        given.layer = layer
        reference = TCAV(model.net, [layer], classifier=given, save_path=str(tmp_path / layer))
        result = reference.interpret(inputs, experiments, target=CUE_CLASS)
        captum_scores = torch.stack([result[key][layer]["sign_count"][0] for key in result])
        assert torch.equal(captum_scores[:4], ours.scores[0, li]), (captum_scores, ours.scores[0, li])
        assert torch.equal(captum_scores[4:], ours.random_scores[li])
