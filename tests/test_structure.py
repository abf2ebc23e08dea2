"""Package structure: the public API and the one-way flow of imports (DESIGN.md section 1)."""

from __future__ import annotations

import ast
from pathlib import Path

import convscope

SRC = Path(convscope.__file__).parent

# package -> packages it must never import
FORBIDDEN = {
    "model": {"methods", "data", "render", "cli", "web", "api", "explanation"},
    "methods": {"render", "data", "cli", "web", "api", "explanation"},
    "data": {"methods", "render", "cli", "web", "explanation"},
    "render": {"methods", "data", "model", "cli", "web", "explanation"},
}


def _imported_packages(path: Path) -> set[str]:
    """Top-level convscope subpackages a module imports (absolute or relative)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package_parts = path.relative_to(SRC).parts[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package_parts[: len(package_parts) - node.level + 1])
                module = ".".join([*base, node.module] if node.module else base)
                names = [module] if module else [a.name for a in node.names]
                if not node.module and not base:
                    names = [a.name for a in node.names]
            elif node.module and node.module.startswith("convscope."):
                names = [node.module.removeprefix("convscope.")]
        elif isinstance(node, ast.Import):
            names = [a.name.removeprefix("convscope.") for a in node.names
                     if a.name.startswith("convscope.")]
        found.update(n.split(".")[0] for n in names if n)
    return found


def test_imports_flow_one_way() -> None:
    violations = []
    for package, forbidden in FORBIDDEN.items():
        for path in (SRC / package).rglob("*.py"):
            bad = _imported_packages(path) & forbidden
            if bad:
                violations.append(f"{path.relative_to(SRC)} imports {sorted(bad)}")
    assert not violations, violations


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
    submodules = {"api", "atlas_tools", "cli", "data", "errors", "explanation", "methods", "model",
                  "render", "scanning", "types", "web"}
    assert public - submodules - set(convscope.__all__) == set()


def test_every_command_module_is_registered() -> None:
    """A cli module with a ``register`` function that main.py forgot would be dead code."""
    import importlib
    import pkgutil

    import convscope.cli as cli
    from convscope.cli.main import COMMAND_MODULES

    modules = [importlib.import_module(f"convscope.cli.{m.name}") for m in pkgutil.iter_modules(cli.__path__)]
    assert {m for m in modules if hasattr(m, "register")} == set(COMMAND_MODULES)
