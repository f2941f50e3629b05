"""edgefleet controller: registry, compression, rollout, telemetry ingest, REST API, dashboard."""
