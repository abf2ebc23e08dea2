"""``convscope`` entry point: parse, dispatch, and turn user errors into one line and exit 2.

Commands live in small modules that each add their sub-parsers (``register``) and set
``func`` to the function that runs them. A :class:`~convscope.errors.ConvscopeError` (or a bad
option) prints one line to stderr and exits with code 2; ``--debug`` (before or after the command)
shows the traceback instead. ``--version`` prints the version.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import ConvscopeError
from . import (
    adversarial,
    atlas_views,
    concepts,
    crp,
    demo,
    dissect,
    evaluate,
    explain,
    fast_style,
    info,
    inside,
    leaderboard,
    project,
    report,
    retrofit,
    scan,
    serve,
    synthesis,
    tcav,
    visualize,
)

COMMAND_MODULES = (info, explain, crp, report, evaluate, leaderboard, demo, inside, visualize, retrofit, scan,
                   atlas_views, fast_style, project, adversarial, synthesis, tcav, dissect, concepts,
                   serve)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (argparse prints usage + error)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


LIBRARY_NAMES = {"max_filters": "max"}
"""Library parameters whose CLI option has another name (``filter_tiles(max_filters=)`` is ``--max``);
an option named like its parameter (``steps`` / ``--steps``, ``batch_size`` / ``--batch-size``) needs
no entry."""

_NAMED_VALUE = re.compile(
    r"^(?P<name>[a-z_][a-z0-9_]*)=(?P<value>'[^']*'|\"[^\"]*\"|[^\s:;]+)[:;] (?P<rest>.*)$", re.S)


def in_user_terms(message: str, command: argparse.ArgumentParser | None) -> str:
    """``max_filters=-3; use ...`` -> ``--max -3: use ...`` when the command has that option: the
    user typed the option, not the library's parameter name."""
    match = _NAMED_VALUE.match(message)
    if match is None or command is None:
        return message
    dest = LIBRARY_NAMES.get(match["name"], match["name"])
    for action in command._actions:
        longs = [o for o in action.option_strings if o.startswith("--")]
        if action.dest == dest and longs:
            value = match["value"].strip("'\"")
            return f"{longs[0]} {value}: {match['rest']}"
    return message


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="convscope", description="See inside a CNN and explain its decisions.")
    parser.add_argument("--version", action="version", version=f"convscope {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for module in COMMAND_MODULES:
        module.register(sub)
    for command in set(sub.choices.values()):  # `convscope explain ... --debug` works too
        # SUPPRESS: a command that is not given --debug keeps the value parsed before it
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show tracebacks of errors")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConvscopeError as err:
        if args.debug:
            raise
        print(f"convscope {args.command}: error: {in_user_terms(str(err), _command(parser, args.command))}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"convscope {args.command}: interrupted", file=sys.stderr)
        return 130


def _command(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser | None:
    """The sub-parser of command ``name`` (to read its options' spellings)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(name)
    return None


if __name__ == "__main__":
    sys.exit(main())
