"""Fixtures for dataset-analysis tests: the exact-arithmetic model and data of scan_fixtures.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

FIXTURES = Path(__file__).with_name("scan_fixtures.py")


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("scan_fixtures", FIXTURES)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def fx() -> ModuleType:
    """The scan_fixtures module (IntNet, int_images, int_dataset)."""
    return _load()
