"""The Overlord's exception tree; HTTP handlers map each branch to one status code."""

from __future__ import annotations

from typing import Any

from fleetcore.errors import FleetError

RETRY_HINT = "the Overlord retries by itself; try again shortly"


def error_body(err: Exception, hint: str | None) -> dict[str, Any]:
    """The JSON body of every error answer: ``{"detail": ..., "hint": ...}``."""
    body: dict[str, Any] = {"detail": str(err)}
    if hint:
        body["hint"] = hint
    return body


class OverlordError(FleetError):
    """Root of every Overlord failure."""


class ConfigError(OverlordError):
    """Settings or the environment are unusable."""


class DatabaseUnavailable(OverlordError):
    """The database cannot be reached; writes are refused until it is back."""


class RequestError(OverlordError):
    """A client asked for something the Overlord refuses; carries an HTTP status."""

    status_code = 400


class NotFound(RequestError):
    status_code = 404


class Conflict(RequestError):
    status_code = 409


class InvalidRequest(RequestError):
    status_code = 422


class AuthError(RequestError):
    """Missing or unknown credential."""

    status_code = 401


class Forbidden(RequestError):
    """A valid credential without the right to do this."""

    status_code = 403


class RateLimited(RequestError):
    status_code = 429


class Overloaded(RequestError):
    """More work is queued than this replica takes on; the client retries later."""

    status_code = 503


class PublishRejected(RequestError):
    """An uploaded release failed verification; nothing was published."""

    status_code = 422


class RepositoryMissing(RequestError):
    """No TUF repository is configured at the Overlord's repository directory."""

    status_code = 503


class NoConfigKey(Conflict):
    """A secret configuration value was sent to an Overlord without ``OVERLORD_CONFIG_KEY``."""


class SecretsUnavailable(RequestError):
    """A device's configuration holds a secret this Overlord's key cannot open."""

    status_code = 503
