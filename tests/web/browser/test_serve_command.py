"""`convscope serve` as a user starts it: a real process that prints its address, opens in Chromium."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def test_convscope_serve_prints_its_address_and_the_page_opens(page: Any, tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "convscope.cli.main", "serve", "--model", "digits_cnn", "--port", "0",
         "--cache", str(tmp_path / "cache")],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        deadline, line = time.monotonic() + 60, ""
        assert process.stderr is not None
        while time.monotonic() < deadline:
            line = process.stderr.readline()
            if "convscope serve:" in line or not line:
                break
        match = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        assert match, f"no address printed: {line!r}"
        page.goto(match.group(1))
        assert page.locator("header.cs-nav a.brand").inner_text() == "convscope"
        assert "digits_cnn" in page.locator("header.cs-nav .model").inner_text()
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert process.returncode in (0, -15)
