"""Every table, imported in one place for Alembic and ``create_all`` in tests."""

from overlord.audit.models import AuditEntry
from overlord.auth.models import ApiKey, DashboardSession, Lease
from overlord.configvars.models import ConfigVariable
from overlord.db import Base
from overlord.devices.models import DesiredStateChange, Device, DeviceHeartbeat
from overlord.events.models import Alert, AlertRule, DeviceEvent
from overlord.remote.models import RecordingPiece, RemoteSession
from overlord.rollouts.models import DeploymentRollout, DeviceGroup, DeviceUpdate

__all__ = [
    "Alert",
    "AlertRule",
    "ApiKey",
    "AuditEntry",
    "Base",
    "ConfigVariable",
    "DashboardSession",
    "DeploymentRollout",
    "DesiredStateChange",
    "Device",
    "DeviceEvent",
    "DeviceGroup",
    "DeviceHeartbeat",
    "DeviceUpdate",
    "Lease",
    "RecordingPiece",
    "RemoteSession",
]
