"""Prefect flows: the retraining pipeline and its parts.

Prefect defaults for nofrog's embedded mode are set here, before Prefect is
imported (a user's own environment wins):
- no telemetry: it phones home (this tool often runs offline), and on a fresh
  machine its first write raced the ephemeral server's SQLite set-up and failed
  the run with "database is locked";
- longer start-up and SQLite timeouts: on a fresh machine the ephemeral server
  migrates a new database first, and on a busy 2-core machine that took longer
  than Prefect's 20 s ("Timed out while attempting to connect to ephemeral
  Prefect API server"; 4 of 4 runs failed under load before, 0 of 4 after).
"""

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_DATABASE_TIMEOUT", "60")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
