"""The entry point: --version, and --debug on either side of the command."""

from __future__ import annotations

import pytest

from convscope import __version__
from convscope.errors import BadModel

from .runner import run


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == f"convscope {__version__}"


def test_an_error_is_one_line_without_debug(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "layers", "--model", "no_such_model")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("convscope layers: error: model 'no_such_model'")


@pytest.mark.parametrize("argv", [["--debug", "layers", "--model", "no_such_model"],
                                  ["layers", "--model", "no_such_model", "--debug"]])
def test_debug_before_or_after_the_command_shows_the_traceback(argv: list[str],
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(BadModel):
        run(capsys, *argv)
