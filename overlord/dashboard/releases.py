"""The release list page's rows: each signed release, where it runs and its rollouts."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from overlord.dashboard.rollout_form import release_value
from overlord.devices.models import AdminStatus, Device
from overlord.releases import service as releases_service
from overlord.releases.schemas import ReleasePublic
from overlord.rollouts import service as rollouts_service
from overlord.rollouts.schemas import RolloutPublic

NO_GROUP = "(no group)"


@dataclass(frozen=True)
class ReleaseRow:
    release: ReleasePublic
    value: str  # how the new-rollout form names it
    running: int
    by_group: dict[str, int]
    rollouts: list[RolloutPublic]


def release_rows(session: Session, *, repo_dir: Path) -> list[ReleaseRow]:
    """Every installable release, newest first per name, with the active devices running it
    (by group) and the rollouts of it, newest first."""
    releases = [
        releases_service.to_public(r) for r in releases_service.list_releases(repo_dir=repo_dir)
    ]
    running: dict[tuple[str, str, str], Counter[str]] = defaultdict(Counter)
    active = select(Device.group_name, Device.image_version, Device.roles).where(
        Device.admin_status == AdminStatus.ACTIVE
    )
    for group, image_version, roles in session.execute(active):
        where = group or NO_GROUP
        running[("os", "os", image_version)][where] += 1
        for role in roles:
            running[("role", str(role.get("name")), str(role.get("version")))][where] += 1
    rollouts: dict[tuple[str, str, str], list[RolloutPublic]] = defaultdict(list)
    for rollout in rollouts_service.public_rollouts(
        session, rollouts_service.list_rollouts(session)
    ):
        rollouts[(rollout.kind.value, rollout.role or "os", rollout.version)].append(rollout)
    rows = []
    for release in releases:
        key = (release.kind.value, release.name, release.version)
        groups = running.get(key, Counter())
        rows.append(
            ReleaseRow(
                release=release,
                value=release_value(*key),
                running=sum(groups.values()),
                by_group=dict(sorted(groups.items())),
                rollouts=rollouts.get(key, []),
            )
        )
    return rows
