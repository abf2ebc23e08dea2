"""CI runs exactly the README's test command: the main suite on torch 2.13.0, then tests/zoo in a
venv with torch 2.14.1 and torchvision 0.29.1 (the main run ignores tests/zoo)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_test_command() -> str:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"Set up and run the tests.*?```bash\n(.*?)\n```", text, re.S)
    assert block, "README has no test command block"
    return block.group(1).strip()


def test_ci_runs_exactly_the_readme_command() -> None:
    command = readme_test_command()
    lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
             if line.strip() and not line.startswith(("#", "set ", "cd "))]
    assert lines == [command]


def test_main_suite_on_213_and_the_zoo_in_its_own_venv() -> None:
    command = readme_test_command()
    main, zoo = command.split(" && python3 -m venv .venv-zoo && ")
    assert "torch==2.13.0" in main and "torchvision" not in main
    # the browser tests drive Debian's chromium: installed when missing and run as root
    assert main.startswith("(command -v chromium >/dev/null") and "apt-get install -y -qq chromium" in main
    assert "torch==2.14.1 torchvision==0.29.1" in zoo and zoo.endswith("tests/zoo")
    config = (ROOT / "pyproject.toml").read_text()  # (tomllib needs Python 3.11)
    assert re.search(r'^addopts = ".*--ignore=tests/zoo.*"$', config, re.M)
    assert re.search(r'^    "torch>=2\.13,<3",', config, re.M)
