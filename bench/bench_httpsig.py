"""The per-request cost of checking a device's signature (ADR 0075), beside the bearer check.

    .venv/bin/python bench/bench_httpsig.py [--requests 2000] [--rounds 5]

In one process, on one core: ``bearer`` is what a cached device credential costs per request
(the token's SHA-256 digest, as ``authenticate`` computes it before the cache look-up);
``signed`` adds what ``device_caller`` does for a key-bound device (parse, body digest,
ed25519 verify, the replay cache). Requests are heartbeat-sized and each one is signed
afresh beforehand (signing is the device's cost, not the Overlord's). Medians over rounds,
with the ratio and the share of one core that 2,000 signed heartbeats a second take (the
Overlord's heartbeat target).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fleetcore import httpsig
from overlord.auth.signatures import SeenSignatures
from overlord.auth.tokens import digest
from simulator.load import heartbeat_body

PATH = "/api/v1/devices/dev-bench00001/heartbeat"
TOKEN = "mfd_" + "x" * 43


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    key = Ed25519PrivateKey.generate()
    public = httpsig.public_bytes(key)
    body = json.dumps(heartbeat_body("1.0.0")).encode()
    bearer_us, signed_us = [], []
    for _ in range(args.rounds):
        now = int(time.time())
        signed = [
            {
                k.lower(): v
                for k, v in httpsig.sign(
                    key, method="POST", path=PATH, query="", body=body, created=now
                ).items()
            }
            for _ in range(args.requests)
        ]
        seen = SeenSignatures()
        start = time.perf_counter()
        for _ in signed:
            digest(TOKEN)
        bearer_us.append((time.perf_counter() - start) / args.requests * 1e6)
        start = time.perf_counter()
        for headers in signed:
            digest(TOKEN)
            parsed = httpsig.verify(
                headers,
                method="POST",
                path=PATH,
                query="",
                body=body,
                public_key=public,
                now=now,
                window_s=300,
            )
            assert seen.first_time(parsed.signature, parsed.created, now - 300)
        signed_us.append((time.perf_counter() - start) / args.requests * 1e6)
    bearer, signed_cost = statistics.median(bearer_us), statistics.median(signed_us)
    print(f"bearer check:        {bearer:8.1f} us/request (baseline)")
    ratio = signed_cost / bearer
    print(f"signed check:        {signed_cost:8.1f} us/request, {ratio:.0f}x the bearer")
    print(f"2,000 heartbeats/s:  {2000 * signed_cost / 1e6:.1%} of one core for verification")


if __name__ == "__main__":
    main()
