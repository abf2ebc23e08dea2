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


def test_errors_name_the_option_the_user_typed(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "filters", "--max", "-3")
    assert code == 2 and err == "convscope filters: error: --max -3: use a positive number or None\n"


def test_library_parameter_names_become_option_spellings() -> None:
    from convscope.cli.main import _command, build_parser, in_user_terms

    parser = build_parser()
    visualize = _command(parser, "visualize")
    assert in_user_terms("steps=0: must be positive", visualize) == "--steps 0: must be positive"
    scan = _command(parser, "scan")
    assert in_user_terms("batch_size=0: must be positive", scan) == "--batch-size 0: must be positive"
    kept = "samples=0: must be a positive integer"  # an -o option of a method, not a CLI option
    assert in_user_terms(kept, _command(parser, "explain")) == kept
    assert in_user_terms("baseline='zeros' meant black; say 'black'", visualize).startswith("baseline=")
