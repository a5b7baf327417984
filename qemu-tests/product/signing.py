"""The release repository the Overlord serves, made and extended with `fleet-sign`."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from fleetcore.run import run


def _tool() -> Path:
    return Path(sys.executable).with_name("fleet-sign")


@dataclass(frozen=True)
class Repository:
    repo: Path
    keys: Path

    @property
    def root_json(self) -> Path:
        return self.repo / "metadata" / "root.json"

    @classmethod
    def init(cls, workdir: Path) -> Repository:
        repo = cls(workdir / "repo", workdir / "keys")
        run([_tool(), "init", repo.repo, "--keys", repo.keys])
        return repo

    def add_release(self, release_dir: Path) -> None:
        run([_tool(), "add-release", self.repo, release_dir, "--keys", self.keys], timeout=900)
