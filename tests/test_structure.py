"""Package structure: the public API and the one-way flow of imports (docs/architecture.md, section 1)."""

from __future__ import annotations

import ast
from pathlib import Path

import convscope

SRC = Path(convscope.__file__).parent

RANKS: list[set[str]] = [
    {"errors", "types"},
    {"model"},
    {"methods", "data", "render"},
    {"tasks"},
    {"web"},
    {"__init__"},
    {"cli"},
]
"""Every top-level module and subpackage of ``convscope``, lowest first. A module may import its
own unit and any unit of a lower rank, never one of its own rank or above. ``__init__`` is the
package's public face (``convscope.explain``), made from the tasks (and the web app, for notebooks);
the CLI is above all of them (``convscope serve`` starts the web app)."""

EXCEPTIONS: dict[str, set[str]] = {"render": {"model"}}
"""Lower units that a unit still may not import: drawing never needs a model."""


def allowed(unit: str) -> set[str]:
    """The units ``unit`` may import (itself included); empty for a unit with no rank."""
    for rank, units in enumerate(RANKS):
        if unit in units:
            lower = set().union(*RANKS[:rank])
            return ({unit} | lower) - EXCEPTIONS.get(unit, set())
    return set()


def unit_of(relative: Path) -> str:
    """``model/fold.py`` -> ``model``; ``errors.py`` -> ``errors``; ``__init__.py`` -> ``__init__``."""
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def imported_units(relative: Path, source: str, units: set[str]) -> set[str]:
    """The units of ``convscope`` that a module imports, absolute or relative, anywhere in it
    (imports inside functions too). A name imported from the package itself that is no unit
    (``from convscope import explain``) is taken from ``__init__``."""
    package = list(relative.parts[:-1])
    found: set[str] = set()

    def add(dotted: str, names: list[str]) -> None:
        first = dotted.split(".")[0] if dotted else ""
        if first:
            found.add(first)
        else:  # ``from convscope import x`` / ``from .. import x``: submodules or façade names
            found.update(n if n in units else "__init__" for n in names)

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            names = [a.name for a in node.names]
            if node.level:
                if node.level - 1 > len(package):
                    continue
                base = package[: len(package) - node.level + 1]
                add(".".join([*base, node.module] if node.module else base), names)
            elif node.module == "convscope":
                add("", names)
            elif node.module and node.module.startswith("convscope."):
                add(node.module.removeprefix("convscope."), names)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "convscope":
                    found.add("__init__")
                elif a.name.startswith("convscope."):
                    add(a.name.removeprefix("convscope."), [])
    return found


def layering_violations(modules: dict[Path, str]) -> list[str]:
    """Each module (path relative to the package -> source) that imports above its rank, or
    that belongs to no rank at all."""
    units = {unit_of(p) for p in modules} | set().union(*RANKS)
    problems = []
    for path, source in sorted(modules.items()):
        unit = unit_of(path)
        ok = allowed(unit)
        if not ok:
            problems.append(f"{path}: '{unit}' has no rank in RANKS; place it there")
            continue
        bad = imported_units(path, source, units) - ok
        if bad:
            problems.append(f"{path} ({unit}) imports {sorted(bad)}")
    return problems


def package_modules() -> dict[Path, str]:
    return {p.relative_to(SRC): p.read_text(encoding="utf-8") for p in SRC.rglob("*.py")}


def test_imports_flow_one_way_by_rank() -> None:
    assert layering_violations(package_modules()) == []


def test_layering_check_catches_a_planted_violation() -> None:
    """The check itself works: upward, sideways, unplaced and façade imports all fail."""
    planted = {
        Path("model/bad.py"): "from ..tasks.explain import explain\n",
        Path("methods/bad.py"): "def f():\n    from convscope.data import load_image\n",
        Path("render/bad.py"): "from ..model import Model\n",
        Path("tasks/bad.py"): "import convscope.cli.main\n",
        Path("data/bad.py"): "from convscope import explain\n",
        Path("newthing.py"): "x = 1\n",
        Path("model/good.py"): "from ..errors import BadModel\nfrom . import fold\n",
        Path("cli/good.py"): "from .. import __version__\nfrom ..tasks import explain\n",
    }
    found = layering_violations(planted)
    assert [line.split(":")[0].split(" ")[0] for line in found] == [
        "data/bad.py", "methods/bad.py", "model/bad.py", "newthing.py", "render/bad.py",
        "tasks/bad.py"]
    assert "['tasks']" in found[2] and "['__init__']" in found[0] and "no rank" in found[3]


def test_core_never_imports_torchvision_or_timm() -> None:
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert not {a.name.split(".")[0] for a in node.names} & {"torchvision", "timm"}, path
            if isinstance(node, ast.ImportFrom) and node.module:
                assert node.module.split(".")[0] not in {"torchvision", "timm"}, path


def test_public_api_is_explicit_and_documented() -> None:
    assert sorted(convscope.__all__) == convscope.__all__
    for name in convscope.__all__:
        obj = getattr(convscope, name)
        assert obj.__doc__, f"convscope.{name} has no docstring"
    public = {n for n in vars(convscope) if not n.startswith("_")}
    submodules = {"cli", "data", "errors", "methods", "model", "render", "tasks", "types", "web"}
    assert public - submodules - set(convscope.__all__) == set()


def test_every_command_module_is_registered() -> None:
    """A cli module with a ``register`` function that main.py forgot would be dead code."""
    import importlib
    import pkgutil

    import convscope.cli as cli
    from convscope.cli.main import COMMAND_MODULES

    modules = [importlib.import_module(f"convscope.cli.{m.name}") for m in pkgutil.iter_modules(cli.__path__)]
    assert {m for m in modules if hasattr(m, "register")} == set(COMMAND_MODULES)


STABLE_METHODS = ["saliency", "gradient_x_input", "smoothgrad", "integrated_gradients",
                  "guided_backprop", "deconvnet", "cam", "gradcam", "gradcam_pp", "guided_gradcam",
                  "occlusion", "lime", "scorecam", "rise", "deeplift", "lrp", "hirescam", "xgradcam",
                  "layercam", "eigencam", "eigengradcam", "ablationcam", "fullgrad", "gradient_shap",
                  "deeplift_shap", "kernel_shap", "drise"]
"""The stable method names of docs/architecture.md, section 5: scripts and saved reports name them."""


def test_stable_method_names_are_all_registered() -> None:
    """A method whose import line was forgotten would silently vanish from the CLI and reports."""
    from convscope.methods.registry import method_names

    names = method_names()
    assert sorted(names) == sorted(STABLE_METHODS), set(names) ^ set(STABLE_METHODS)


def test_no_command_imports_another_command() -> None:
    """Commands share helpers (common, options, progress), never each other: work that two
    commands need lives in ``convscope.tasks``."""
    import pkgutil

    import convscope.cli as cli

    commands = {m.name for m in pkgutil.iter_modules(cli.__path__)
                if "def register(" in (SRC / "cli" / f"{m.name}.py").read_text(encoding="utf-8")}
    for name in commands:
        tree = ast.parse((SRC / "cli" / f"{name}.py").read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                imported = {node.module} if node.module else {a.name for a in node.names}
                assert not imported & (commands - {"main"}), f"cli/{name}.py imports {imported}"
