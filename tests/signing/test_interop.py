"""A stock python-tuf client, given only root.json and the URLs, downloads every target."""

import json
from pathlib import Path

from tuf.ngclient import Updater

from tests.signing.conftest import REPOS


def test_stock_ngclient_downloads_every_target(tmp_path, repo_server, trusted_root):
    repo_server.serve(REPOS / "rotated")
    metadata = tmp_path / "metadata"
    metadata.mkdir()
    (metadata / "root.json").write_bytes(trusted_root)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    updater = Updater(
        metadata_dir=str(metadata),
        metadata_base_url=f"{repo_server.url}/metadata/",
        target_base_url=f"{repo_server.url}/targets/",
        target_dir=str(downloads),
        bootstrap=None,
    )
    updater.refresh()
    names = json.loads((REPOS / "rotated" / "metadata" / "targets.json").read_text())["signed"][
        "targets"
    ]
    assert len(names) == 3
    for name in names:
        info = updater.get_targetinfo(name)
        assert info is not None
        path = updater.download_target(info)
        with Path(path).open("rb") as handle:
            info.verify_length_and_hashes(handle)
