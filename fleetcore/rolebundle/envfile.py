"""Render a role's ``.env`` from its ``.env.template`` and the device's configuration.

Jinja2 in a sandbox with ``StrictUndefined``: a value the template needs but the device lacks
is an error naming it (:class:`MissingValue`), never an empty string. The context holds
``vars`` (the configuration variables the Overlord sends: fleet, group and device level,
``{{ vars.CAMERA_FPS }}``), ``config`` (the device's own ``/data/fleet/roles/<role>.yaml``),
``device`` and ``role``. The manager appends the variables it owns (``ROLE_NAME``,
``ROLE_VERSION``, ``ROLE_STATE``, ``DEVICE_ID``); a template may read them from the context
but not define them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from fleetcore.rolebundle.errors import MissingValue, TemplateError

RESERVED = ("ROLE_NAME", "ROLE_VERSION", "ROLE_STATE", "DEVICE_ID")
_LINE = re.compile(r"^(?P<key>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*)$")


def _environment() -> SandboxedEnvironment:
    return SandboxedEnvironment(
        undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True
    )


def check_template(text: str) -> None:
    """Syntax only: rendering needs the device's configuration."""
    try:
        _environment().parse(text)
    except jinja2.TemplateSyntaxError as err:
        raise TemplateError(f".env.template line {err.lineno}: {err.message}") from err


def render(text: str, *, context: Mapping[str, Any], owned: Mapping[str, str]) -> str:
    """Return the ``.env`` text: the rendered template, then the manager-owned variables."""
    try:
        rendered = _environment().from_string(text).render(**context)
    except jinja2.UndefinedError as err:
        # The fix in the message itself: it travels as the device's event reason.
        raise MissingValue(
            f".env.template: {err.message} (set vars.KEY with `fleetctl config set`, "
            "config.key in the device's role configuration)",
            hint="or give the template a default: {{ vars.KEY | default('...') }}",
        ) from err
    except jinja2.TemplateError as err:
        raise TemplateError(f".env.template: {err}") from err
    lines = []
    for number, line in enumerate(rendered.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            lines.append(line)
            continue
        match = _LINE.fullmatch(stripped)
        if not match:
            raise TemplateError(f".env line {number} is not KEY=VALUE: {stripped[:60]!r}")
        if match.group("key") in RESERVED:
            raise TemplateError(f".env line {number} redefines {match.group('key')}")
        lines.append(stripped)
    for key, value in owned.items():
        if "\n" in value:
            raise TemplateError(f"{key} contains a newline")
        lines.append(f"{key}={value}")
    return "\n".join(lines) + "\n"
