"""One module per command group; each adds its parsers with ``add(groups)``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fleetctl.errors import UsageError
from fleetctl.session import Session

Command = Callable[[Session, argparse.Namespace], int | None]
if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]
else:  # not subscriptable at run time
    Subparsers = argparse._SubParsersAction


def global_options(defaults: bool) -> argparse.ArgumentParser:
    """--url, --token and --json: on the top parser with defaults, and on every command
    without (argparse.SUPPRESS), so they are accepted before or after the command."""
    parser = argparse.ArgumentParser(add_help=False)
    unset: dict[str, Any] = {} if defaults else {"default": argparse.SUPPRESS}
    parser.add_argument("--url", help="the Overlord's base URL (FLEET_URL)", **unset)
    parser.add_argument("--token", help="an operator token (FLEET_TOKEN)", **unset)
    parser.add_argument(
        "--json", action="store_true", help="print JSON for scripts instead of a table", **unset
    )
    return parser


_COMMAND_OPTIONS = global_options(defaults=False)


def group(groups: Subparsers, name: str, help_text: str) -> Subparsers:
    parser = groups.add_parser(name, help=help_text, description=help_text)
    actions: Subparsers = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    return actions


def command(
    actions: Subparsers, name: str, func: Command, help_text: str, description: str | None = None
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = actions.add_parser(
        name, help=help_text, description=description or help_text, parents=[_COMMAND_OPTIONS]
    )
    parser.set_defaults(func=func)
    return parser


def key_values(items: list[str], what: str) -> dict[str, str]:
    """``KEY=VALUE`` arguments as a dict; a malformed one is a usage error."""
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise UsageError(f"{what} must be KEY=VALUE, not {item!r}")
        pairs[key] = value
    return pairs
