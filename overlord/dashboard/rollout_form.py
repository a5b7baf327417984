"""The dashboard's "new rollout" form: its fields turned into the API's ``RolloutCreate``.

Pure: it takes the submitted fields and returns the validated spec or raises
``InvalidRequest`` with one line naming the field, the same checks as ``POST /rollouts``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from pydantic import ValidationError

from overlord.errors import InvalidRequest
from overlord.rollouts.schemas import RolloutCreate

# One value each; the list fields may repeat (a multi-select sends one value per choice).
SINGLE = frozenset(
    {
        "csrf",
        "release",
        "name",
        "labels",
        "exclude_labels",
        "exclude_devices",
        "min_bootloader",
        "canary_devices",
        "stages",
        "success_window_s",
        "stage_timeout_s",
        "failure_threshold",
        "start_at",
        "deadline",
    }
)
MULTIPLE = frozenset(
    {"groups", "hardware", "boards", "exclude_groups", "exclude_hardware", "exclude_boards"}
)


def release_value(kind: str, name: str, version: str) -> str:
    """A release as the form's select sends it: ``os/1.1.0`` or ``role/camera/2.0.0``."""
    return f"{kind}/{version}" if kind == "os" else f"{kind}/{name}/{version}"


def spec(form: Sequence[tuple[str, str]]) -> RolloutCreate:
    """The rollout the form describes; InvalidRequest naming the field otherwise."""
    fields: dict[str, list[str]] = {}
    for key, value in form:
        if key not in SINGLE | MULTIPLE:
            raise InvalidRequest(f"{key[:64]}: not a field of this form")
        fields.setdefault(key, []).append(value.strip())
    if repeated := sorted(k for k, v in fields.items() if k in SINGLE and len(v) > 1):
        raise InvalidRequest(f"{repeated[0]}: sent more than once")
    one = {k: v[0] for k, v in fields.items() if k in SINGLE and v[0]}
    body: dict[str, object] = _release(one.get("release", ""))
    body["name"] = one.get("name", "")
    body["selector"] = {
        "groups": fields.get("groups", []),
        "labels": _pairs(one.get("labels", ""), "labels"),
        "hardware": fields.get("hardware", []),
        "boards": fields.get("boards", []),
        "exclude": {
            "groups": fields.get("exclude_groups", []),
            "labels": _pairs(one.get("exclude_labels", ""), "exclude_labels"),
            "hardware": fields.get("exclude_hardware", []),
            "boards": fields.get("exclude_boards", []),
            "devices": one.get("exclude_devices", "").replace(",", " ").split(),
        },
    }
    for key in (
        "min_bootloader",
        "canary_devices",
        "success_window_s",
        "stage_timeout_s",
        "failure_threshold",
    ):
        if key in one:
            body[key] = one[key]
    if "stages" in one:
        body["stages"] = [part.strip() for part in one["stages"].split(",")]
    for key in ("start_at", "deadline"):
        if key in one:
            body[key] = _utc(one[key], key)
    try:
        return RolloutCreate.model_validate(body)
    except ValidationError as err:
        raise InvalidRequest(_first_problem(err)) from None


def _release(value: str) -> dict[str, object]:
    parts = value.split("/")
    if len(parts) == 2 and parts[0] == "os":
        return {"kind": "os", "version": parts[1]}
    if len(parts) == 3 and parts[0] == "role":
        return {"kind": "role", "role": parts[1], "version": parts[2]}
    raise InvalidRequest("release: pick a release")


def _pairs(text: str, field: str) -> dict[str, str]:
    """``site=north, rack=3`` as a dict."""
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise InvalidRequest(f"{field}: write KEY=VALUE, comma-separated, not {item[:64]!r}")
        pairs[key.strip()] = value.strip()
    return pairs


def _utc(text: str, field: str) -> str:
    """A browser's ``datetime-local`` value (no zone) read as UTC, as the form says; a value
    with its own zone is kept as it is."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(f"{field}: not a date and time: {text[:64]!r}") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


def _first_problem(err: ValidationError) -> str:
    problem = err.errors()[0]
    where = ".".join(str(p) for p in problem["loc"]) or "form"
    return f"{where}: {problem['msg']}"[:300]


def echo(form: Mapping[str, str]) -> dict[str, str]:
    """The single-value fields to show again after a refusal (never the CSRF token)."""
    return {k: v[:2000] for k, v in form.items() if k in SINGLE - {"csrf"}}
