"""Method options as plain types: what the web app's forms offer and how JSON values are checked."""

from __future__ import annotations

import typing

import pytest

from convscope.errors import BadArgument
from convscope.methods.option_specs import check_options, describe, option_specs
from convscope.methods.registry import REGISTRY, build_method, method_names


@pytest.mark.parametrize("name", method_names())
def test_every_offered_value_is_accepted_by_the_constructor(tiny, name: str) -> None:
    """The defaults and every choice a form offers build the method: the specs cannot drift from
    the constructors they are read from."""
    for spec in option_specs(name):
        values = list(spec.choices) if spec.kind == "choice" else [spec.default]
        for value in values:
            options = check_options(name, {spec.name: value})
            build_method(name, tiny, "conv2" if REGISTRY[name].needs_layer else None, **options)


def test_kinds_come_from_the_type_hints() -> None:
    specs = {s.name: s for s in option_specs("occlusion")}
    assert specs["window"].kind == "int" and specs["window"].nullable  # int | tuple | None
    assert specs["baseline"].kind == "choice" and "blur" in specs["baseline"].choices
    assert "groups" not in specs and "progress" not in specs  # tensors only / filled by the caller
    saliency = {s.name: s for s in option_specs("saliency")}
    hint = typing.get_type_hints(REGISTRY["saliency"].cls.__init__)["magnitude"]
    assert saliency["magnitude"].choices == typing.get_args(hint)
    described = describe("gradcam")
    assert described["needs_layer"] and described["options"] == [
        {"name": "relu", "type": "bool", "default": True, "nullable": False, "choices": [],
         "low": None, "high": None},
        *({"name": name, "type": "bool", "default": False, "nullable": False, "choices": [],
           "low": None, "high": None} for name in ("aug_smooth", "eigen_smooth"))]


def test_json_values_become_option_values() -> None:
    assert check_options("integrated_gradients", {"steps": 8.0, "sigma": 2, "baseline": "blur"}) == {
        "steps": 8, "sigma": 2.0, "baseline": "blur"}
    assert check_options("occlusion", {"window": None}) == {"window": None}
    assert type(check_options("integrated_gradients", {"steps": 8.0})["steps"]) is int


@pytest.mark.parametrize(("method", "options", "needle"), [
    ("saliency", {"steps": 3}, "method 'saliency' has no option 'steps'; its options: magnitude, reduce"),
    ("saliency", {"magnitude": "cube"}, "choose from 'abs', 'square'"),
    ("integrated_gradients", {"steps": "many"}, "must be an integer"),
    ("integrated_gradients", {"steps": 2.5}, "must be an integer"),
    ("integrated_gradients", {"steps": True}, "must be an integer"),
    ("integrated_gradients", {"sigma": float("nan")}, "must be a finite number"),
    ("integrated_gradients", {"steps": None}, "give a value (default 50)"),
    ("gradcam", {"relu": "yes"}, "must be true or false"),
    ("occlusion", {"groups": [1, 2]}, "set it from Python"),
    ("occlusion", {"progress": 1}, "has no option 'progress'"),
    ("gradcamm", {}, "did you mean gradcam"),
])
def test_bad_values_get_one_line_naming_the_option(method: str, options: dict, needle: str) -> None:
    with pytest.raises(BadArgument) as err:
        check_options(method, options)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_every_default_lies_within_its_bound_and_huge_values_are_refused() -> None:
    for name in method_names():
        for spec in option_specs(name):
            if spec.default is not None and spec.kind in ("int", "float"):
                assert check_options(name, {spec.name: spec.default}) == {spec.name: spec.default}
    for method, option, value in (("rise", "masks", 10**12), ("occlusion", "window", -5),
                                  ("integrated_gradients", "steps", 10**400), ("smoothgrad", "noise", 1e400)):
        with pytest.raises(BadArgument, match=f"option {option}="):
            check_options(method, {option: value})
