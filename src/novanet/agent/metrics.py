"""Prometheus metrics of one agent, in a registry of its own (no module-level globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.sync_seconds = Histogram(
            "novanet_sync_duration_seconds",
            "Duration of syncs of the host to the database",
            ["kind"],
            registry=self.registry,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.sync_failures = Counter(
            "novanet_sync_failures_total",
            "Syncs that failed (a full sync follows)",
            ["kind"],
            registry=self.registry,
        )
        self.drift_repairs = Counter(
            "novanet_drift_repairs_total",
            "Full syncs started because the host drifted",
            registry=self.registry,
        )
        self.pending_changes = Gauge(
            "novanet_pending_changes",
            "Changes logged in the database and not yet applied",
            registry=self.registry,
        )
        self.snapshot_reads = Counter(
            "novanet_snapshot_reads_total",
            "Reads of this host's whole share of the database (full syncs, drift checks, and"
            " partial syncs of a change that is not about a few instances or floating IPs)",
            registry=self.registry,
        )
        self.partial_reads = Counter(
            "novanet_partial_reads_total",
            "Partial syncs that re-read only the instances a change named",
            registry=self.registry,
        )
        self.elements = Gauge(
            "novanet_elements", "Objects this host carries", ["kind"], registry=self.registry
        )

        self.rejected_rows = Gauge(
            "novanet_rejected_rows",
            "Database rows this host skipped because a value in them is malformed",
            ["kind"],
            registry=self.registry,
        )

    def serve(self, port: int, address: str = "127.0.0.1") -> None:
        start_http_server(port, addr=address, registry=self.registry)
