"""``fleetctl releases list|publish|gc``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from fleetcore.release import chunk_path
from fleetctl.client import Client
from fleetctl.commands import Subparsers, command, group
from fleetctl.output import ByteProgress, columns, human_bytes
from fleetctl.publish import Served, Step, UploadFile, plan, served_state
from fleetctl.session import Session

_COLUMNS = columns(
    ("KIND", "kind"),
    ("NAME", "name"),
    ("VERSION", "version"),
    ("HARDWARE", "hardware"),
    ("SIZE", "length"),
    ("TARGET", "target"),
)


def add(sub: Subparsers) -> None:
    actions = group(sub, "releases", "signed releases: list, publish, collect garbage")
    p = command(actions, "list", list_releases, "releases in the served targets metadata")
    p.add_argument("--kind", choices=("os", "role", "bootloader"))
    p = command(
        actions,
        "publish",
        publish,
        "upload what fleet-sign signed offline (releases, role bundles, a root rotation)",
        "Compare REPO (the repository fleet-sign add/add-release/rotate wrote) with what the "
        "Overlord serves and upload the new root versions, the new targets metadata and only "
        "the files and chunks the Overlord does not hold yet. The Overlord verifies every "
        "signature and hash before serving any of it.",
    )
    p.add_argument("repo", type=Path, metavar="REPO")
    p.add_argument("--dry-run", action="store_true", help="show what would be uploaded")
    p = command(
        actions,
        "gc",
        gc,
        "delete releases, chunks and metadata no device can need (admin)",
        "What stays: docs/operations.md, 'Repository garbage collection'.",
    )
    p.add_argument("--dry-run", action="store_true", help="list what would be deleted")
    p.add_argument("--keep", type=int, metavar="N", help="newest releases kept per OS/role")


def list_releases(session: Session, args: argparse.Namespace) -> None:
    session.printer.table(session.client.get("/releases", params={"kind": args.kind}), _COLUMNS)


def _served(client: Client) -> Served:
    root = client.call("GET", "/tuf/metadata/root.json", api=False)
    targets = client.call("GET", "/tuf/metadata/targets.json", api=False)
    return served_state(root, targets)


def _drop_stored_chunks(client: Client, step: Step) -> None:
    """Chunks (and diffs) are content-addressed and shared between releases: skip those
    already served."""
    step.chunks = {
        digest: path
        for digest, path in step.chunks.items()
        if not client.exists(f"/tuf/{chunk_path(digest)}")
    }
    step.diffs = {
        name: path for name, path in step.diffs.items() if not client.exists(f"/tuf/{name}")
    }


def _describe(step: Step) -> dict[str, Any]:
    return {
        "root": step.root.name if step.root else None,
        "targets": step.targets is not None,
        "files": sorted(step.files),
        "chunks": len(step.chunks),
        "diffs": len(step.diffs),
        "bytes": step.size(),
    }


def publish(session: Session, args: argparse.Namespace) -> None:
    client = session.client
    served = _served(client)
    steps = plan(args.repo, served)
    for step in steps:
        _drop_stored_chunks(client, step)
    if not steps:
        session.printer.message(
            f"nothing to publish: the Overlord serves root {served.root_version} and targets "
            f"{served.targets_version}, as new as {args.repo}"
        )
        if session.printer.as_json:
            session.printer.data([])
        return
    if args.dry_run:
        session.printer.table(
            [_describe(s) for s in steps],
            columns(
                ("ROOT", "root"),
                ("TARGETS", "targets"),
                ("FILES", "files"),
                ("NEW CHUNKS", "chunks"),
                ("NEW DIFFS", "diffs"),
                ("BYTES", "bytes"),
            ),
        )
        return
    results = []
    for number, step in enumerate(steps, start=1):
        label = f"publish {number}/{len(steps)}"
        progress = ByteProgress(label, step.size(), session.progress)
        results.append(client.call("POST", "/tuf/publish", files=_parts(step, progress)))
        session.progress.done()
    if session.printer.as_json:
        session.printer.data(results)
        return
    last = results[-1]
    session.printer.message(
        f"published: root version {last['root_version']}, targets version "
        f"{last['targets_version']}, {sum(r['new_chunks'] for r in results)} new chunks, "
        f"{sum(r.get('new_deltas', 0) for r in results)} new diffs "
        f"({human_bytes(sum(s.size() for s in steps))} uploaded)"
    )


def _parts(step: Step, progress: ByteProgress) -> list[tuple[str, tuple[str, Any, str]]]:
    parts: list[tuple[str, tuple[str, Any, str]]] = []
    if step.root is not None:
        parts.append(("root", ("root.json", UploadFile(step.root, progress), "application/json")))
    if step.targets is not None:
        parts.append(
            ("targets", ("targets.json", UploadFile(step.targets, progress), "application/json"))
        )
    parts += [
        (f"target:{name}", ("f", UploadFile(path, progress), "application/octet-stream"))
        for name, path in step.files.items()
    ]
    parts += [
        (f"chunk:{digest}", ("c", UploadFile(path, progress), "application/zstd"))
        for digest, path in step.chunks.items()
    ]
    parts += [
        (f"delta:{name}", ("d", UploadFile(path, progress), "application/zstd"))
        for name, path in step.diffs.items()
    ]
    return parts


def gc(session: Session, args: argparse.Namespace) -> None:
    body: dict[str, Any] = {"dry_run": args.dry_run}
    if args.keep is not None:
        body["keep_last"] = args.keep
    result = session.client.call("POST", "/releases/gc", body=body)
    if session.printer.as_json:
        session.printer.data(result)
        return
    session.printer.table(result["files"], columns(("SIZE", "size"), ("PATH", "path")))
    verb = "would delete" if result["dry_run"] else "deleted"
    session.printer.message(
        f"{verb} {result['deleted_files']} files ({human_bytes(result['deleted_bytes'])}); "
        f"releases dropped: {', '.join(result['dropped_releases']) or 'none'}"
    )
