"""The metric registry: names, groups, directions, and one-line refusals of missing inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from convscope.errors import BadArgument
from convscope.methods.evaluation.faithfulness import box_energy, deletion
from convscope.methods.evaluation.metrics import (
    METRICS,
    MetricInput,
    get_metric,
    metric_list,
    metric_names,
)
from convscope.model import FastForward, Model, Preprocess


def tiny_model() -> Model:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(4, 3))
    return Model(net, preprocess=Preprocess(input_size=(16, 16)))


def test_every_metric_says_its_direction_group_and_paper() -> None:
    assert {"deletion_auc", "insertion_auc", "pointing_game", "energy", "iou"} <= set(METRICS)
    for metric in METRICS.values():
        assert metric.paper and metric.summary
        assert metric.direction in ("higher is better", "lower is better")
    assert not get_metric("deletion_auc").higher_is_better
    assert get_metric("insertion_auc").higher_is_better


def test_names_groups_and_typos() -> None:
    assert metric_list("deletion_auc, energy") == ["deletion_auc", "energy"]
    assert metric_list("localization") == metric_names("localization")
    assert metric_list("all") == metric_names()
    with pytest.raises(BadArgument, match="did you mean deletion_auc"):
        metric_list("deletion_aux")
    with pytest.raises(BadArgument, match="no metric given"):
        metric_list(" , ")


def test_energy_is_relevance_mass_by_another_name_and_never_a_second_column() -> None:
    """Score-CAM's energy pointing game and relevance mass accuracy are one formula."""
    assert get_metric("energy").alias_of == "relevance_mass"
    assert "energy" not in metric_names() and "relevance_mass" in metric_names("localization")
    assert metric_list("localization, energy") == metric_names("localization")
    assert metric_list("energy, pointing_game, relevance_mass") == ["energy", "pointing_game"]


def test_registry_scores_equal_the_functions_and_refuse_missing_boxes() -> None:
    model = tiny_model()
    x = torch.randn(2, 3, 16, 16)
    maps = torch.rand(2, 1, 16, 16)
    targets = torch.tensor([0, 2])
    fast = FastForward(model)
    data = MetricInput(model, x, maps, targets, fast, steps=8)
    expected = deletion(model, x, maps, targets, steps=8, fast=fast).auc
    assert torch.allclose(get_metric("deletion_auc")(data), expected)
    with pytest.raises(BadArgument, match="metric 'energy' needs a box or mask"):
        get_metric("energy")(data)
    boxes = torch.tensor([[0, 0, 8, 8], [4, 4, 16, 16]])
    with_boxes = MetricInput(model, x, maps, targets, fast, boxes=boxes)
    assert torch.allclose(get_metric("energy")(with_boxes), box_energy(maps, boxes))
    masks = torch.zeros(2, 16, 16, dtype=torch.bool)
    masks[0, :8, :8] = True
    masks[1, 4:, 4:] = True
    with_masks = MetricInput(model, x, maps, targets, fast, masks=masks)
    assert torch.allclose(get_metric("energy")(with_masks), box_energy(maps, boxes))


def test_average_drop_and_increase_in_confidence_share_one_masked_pass() -> None:
    model = tiny_model()
    x, maps, targets = torch.randn(2, 3, 16, 16), torch.rand(2, 1, 16, 16), torch.tensor([0, 2])
    fast = FastForward(model)
    calls = []
    scores = fast.scores
    fast.scores = lambda *a, **k: calls.append(1) or scores(*a, **k)  # type: ignore[method-assign]
    data = MetricInput(model, x, maps, targets, fast)
    drop, increase = get_metric("average_drop")(data), get_metric("increase_confidence")(data)
    assert len(calls) == 1
    alone = MetricInput(model, x, maps, targets, FastForward(model))
    torch.testing.assert_close(drop, get_metric("average_drop")(alone))
    torch.testing.assert_close(increase, get_metric("increase_confidence")(alone))
