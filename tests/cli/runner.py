"""Run the ``convscope`` command line in-process, as the CLI tests do."""

from __future__ import annotations

import pytest

from convscope.cli import main as cli_main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``convscope ARGV``; argparse usage errors exit too."""
    try:
        code = cli_main.main(list(argv))
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err
