"""The metric objects of one replica, exactly the names of docs/metrics.md.

Counters and the latency histogram count this replica's work (Prometheus sums replicas);
fleet and rollout gauges are computed from the database at scrape time, so every replica
reports the same fleet.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from overlord import __version__

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self) -> None:
        # The contract has no *_created series; this switch is process-wide in the library.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        self.update_outcomes = Counter(
            "fleet_update_outcomes",
            "update results reported by devices",
            ["kind", "outcome"],
            registry=self.registry,
        )
        for kind in ("os", "role"):
            for outcome in ("committed", "rolled_back", "failed"):
                self.update_outcomes.labels(kind=kind, outcome=outcome)
        self.heartbeats = Counter("fleet_heartbeats", "heartbeats accepted", registry=self.registry)
        self.remote_waits = Gauge(
            "fleet_remote_waits",
            "devices' long-polls for a remote session held by this process now",
            registry=self.registry,
        )
        self.request_duration = Histogram(
            "fleet_http_request_duration_seconds",
            "API latency, by route template",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        build = Gauge(
            "fleet_build_info",
            "the running Overlord's version",
            ["version"],
            registry=self.registry,
        )
        build.labels(version=__version__).set(1)
