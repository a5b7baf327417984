"""Role bundles through a real TUF repository served over loopback HTTP."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetcore.release import Hardware, role_target
from fleetcore.version import Version
from fleetcore.wire import DesiredRole
from signing.client import ReleaseClient
from signing.keys import KeyStore
from signing.repository import add_targets, init_repository
from signing.targets import TargetCustom, TargetKind, TargetSpec, payload_digest
from updater.roles.archive import pack
from updater.roles.errors import TargetRefused
from updater.roles.fetch import TufRoleFetcher

from .helpers import make_bundle


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture
def repo(tmp_path) -> Iterator[tuple[Path, KeyStore, str]]:
    repo = tmp_path / "repo"
    keys = KeyStore.generate(tmp_path / "keys")
    init_repository(repo, keys)
    handler = functools.partial(Quiet, directory=str(repo))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield repo, keys, f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


def publish(tmp_path, repo, keys, version, *, kind=TargetKind.ROLE, floor=None, signed_as=None):
    archive = tmp_path / f"webapp-{version}.tar.zst"
    pack(make_bundle(tmp_path / f"src-{version}", version=version), archive)
    size, sha = payload_digest(archive)
    custom = TargetCustom(
        kind=kind,
        version=Version(signed_as or version),
        hardware=(Hardware.PI4, Hardware.PI5),
        uncompressed_size=size,
        uncompressed_sha256=sha,
        version_floor=Version(floor) if floor else None,
    )
    add_targets(repo, keys, [TargetSpec(archive, role_target("webapp", version), custom)])


def fetcher(tmp_path, url, *, hardware=Hardware.PI4, installed=None):
    root = (tmp_path / "repo" / "metadata" / "1.root.json").read_bytes()
    client = ReleaseClient(metadata_dir=tmp_path / "tuf", base_url=url, bootstrap_root=root)
    client.refresh()
    return TufRoleFetcher(
        client, tmp_path / "cache", hardware=hardware, installed=lambda name: installed
    )


def desired(version):
    return DesiredRole(
        name="webapp", version=Version(version), target=role_target("webapp", version)
    )


def test_fetches_the_verified_bundle(tmp_path, repo):
    path, keys, url = repo
    publish(tmp_path, path, keys, "1.0.0")
    publish(tmp_path, path, keys, "1.1.0", floor="1.1.0")
    fetch = fetcher(tmp_path, url, installed=Version("1.0.0"))
    first = fetch(desired("1.0.0"))
    assert first.archive.read_bytes() == (tmp_path / "webapp-1.0.0.tar.zst").read_bytes()
    assert first.floor is None
    second = fetch(desired("1.1.0"))
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [second.archive.name]
    assert second.floor == Version("1.1.0")  # the manager keeps it for every later start


@pytest.mark.parametrize(
    ("publish_kwargs", "fetch_kwargs", "message"),
    [
        ({"kind": TargetKind.OS}, {}, "is not signed as a role bundle"),
        ({"signed_as": "9.9.9"}, {}, "is signed as version 9.9.9"),
        ({}, {"hardware": Hardware.QEMU}, "not signed for qemu"),
        ({}, {"installed": Version("2.0.0")}, "lower than the installed 2.0.0"),
        ({"floor": "1.5.0"}, {}, "below this device's version floor 1.5.0"),
    ],
    ids=["kind", "version", "hardware", "downgrade", "floor"],
)
def test_refusals(tmp_path, repo, publish_kwargs, fetch_kwargs, message):
    path, keys, url = repo
    publish(tmp_path, path, keys, "1.0.0", **publish_kwargs)
    with pytest.raises(TargetRefused, match=message):
        fetcher(tmp_path, url, **fetch_kwargs)(desired("1.0.0"))
    assert not (tmp_path / "cache").exists()


def test_target_name_must_match_the_role(tmp_path, repo):
    path, keys, url = repo
    publish(tmp_path, path, keys, "1.0.0")
    role = DesiredRole(name="webapp", version=Version("1.0.0"), target="os/1.0.0/manifest.json")
    with pytest.raises(TargetRefused, match="expected 'roles/webapp/1.0.0.tar.zst'"):
        fetcher(tmp_path, url)(role)


@pytest.mark.integration
def test_manager_applies_a_role_from_the_signed_repository(tmp_path, repo, harness):
    path, keys, url = repo
    archive = tmp_path / "signed.tar.zst"
    pack(make_bundle(tmp_path / "signed-src", image=harness.image), archive)
    size, sha = payload_digest(archive)
    custom = TargetCustom(
        kind=TargetKind.ROLE,
        version=Version("1.0.0"),
        hardware=(Hardware.PI4,),
        uncompressed_size=size,
        uncompressed_sha256=sha,
    )
    add_targets(path, keys, [TargetSpec(archive, role_target("webapp", "1.0.0"), custom)])
    manager = harness.manager()
    root = (path / "metadata" / "1.root.json").read_bytes()
    client = ReleaseClient(metadata_dir=tmp_path / "tuf", base_url=url, bootstrap_root=root)
    client.refresh()
    fetch = TufRoleFetcher(
        client, tmp_path / "cache", hardware=Hardware.PI4, installed=manager.installed_version
    )
    assert manager.apply([desired("1.0.0")], fetch) == {"webapp": "applied"}
    assert manager.installed_version("webapp") == Version("1.0.0")
