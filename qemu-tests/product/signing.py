"""The release repository the Overlord serves, made and extended with `fleet-sign`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fleetcore.release import role_target
from fleetcore.run import run
from product import tool


@dataclass(frozen=True)
class Repository:
    repo: Path
    keys: Path

    @property
    def root_json(self) -> Path:
        return self.repo / "metadata" / "root.json"

    @classmethod
    def init(cls, workdir: Path) -> Repository:
        """A new repository, or the one a previous run left in ``workdir``."""
        repo = cls(workdir / "repo", workdir / "keys")
        if not repo.root_json.exists():
            run([tool("fleet-sign"), "init", repo.repo, "--keys", repo.keys])
        return repo

    def add_release(self, release_dir: Path, version: str) -> None:
        """Sign and publish a release (once: a release a previous run added is kept)."""
        stamp = self.repo.with_name(f"released-{version}")
        if stamp.exists():
            return
        run(
            [tool("fleet-sign"), "add-release", self.repo, release_dir, "--keys", self.keys],
            timeout=900,
        )
        stamp.touch()

    def add_role(self, archive: Path, name: str, version: str) -> None:
        """Sign and publish a role bundle as a TUF role target (once, like releases)."""
        stamp = self.repo.with_name(f"released-role-{name}-{version}")
        if stamp.exists():
            return
        run(
            [tool("fleet-sign"), "add", self.repo, archive, "--name", role_target(name, version),
             "--kind", "role", "--version", version, "--keys", self.keys],
        )  # fmt: skip
        stamp.touch()
