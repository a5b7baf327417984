"""The safe-mode status page: ``status.json`` and ``index.html`` the agent writes for httpd.

Pure rendering plus one atomic write per file; the safe-mode stack serves the directory
read-only, so the page is whatever the agent last wrote, even when the agent is busy.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from fleetcore.atomic import atomic_write
from fleetcore.wire import RoleStatus


@dataclass(frozen=True)
class PageData:
    device_id: str
    generated: datetime
    safe_mode: bool
    reason: str | None
    roles: Sequence[RoleStatus]
    errors: Sequence[tuple[str, str]]


def render_json(data: PageData) -> bytes:
    doc = {
        "device_id": data.device_id,
        "generated": data.generated.isoformat(),
        "safe_mode": data.safe_mode,
        "reason": data.reason,
        "roles": [r.model_dump(mode="json") for r in data.roles],
        "last_errors": [{"role": role, "error": error} for role, error in data.errors],
    }
    return json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n"


def render_html(data: PageData) -> bytes:
    esc = html.escape
    rows = "".join(
        f"<tr><td>{esc(r.name)}</td><td>{esc(str(r.version or '-'))}</td>"
        f"<td>{esc(r.health.value)}</td></tr>"
        for r in data.roles
    )
    errors = "".join(f"<li><b>{esc(role)}</b>: {esc(err)}</li>" for role, err in data.errors)
    banner = (
        f"<p class=warn>Safe mode: {esc(data.reason or 'entered')}</p>" if data.safe_mode else ""
    )
    page = f"""<!doctype html>
<html><head><meta charset=utf-8><meta http-equiv=refresh content=30>
<title>Metrica Fleet device {esc(data.device_id)}</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:.2em 1em;text-align:left}}
.warn{{background:#fdd;padding:.5em}}</style></head>
<body><h1>Device {esc(data.device_id)}</h1>{banner}
<h2>Roles</h2><table><tr><th>role</th><th>version</th><th>health</th></tr>{rows}</table>
<h2>Last errors</h2><ul>{errors or "<li>none</li>"}</ul>
<p>Updated {esc(data.generated.isoformat(timespec="seconds"))}.
Machine-readable: <a href=status.json>status.json</a>.</p></body></html>
"""
    return page.encode()


def write_page(directory: Path, data: PageData) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write(directory / "status.json", render_json(data))
    atomic_write(directory / "index.html", render_html(data))
