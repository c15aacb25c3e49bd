"""Fixtures of the NATS tests: real nats-server processes (nats_cluster.py)."""

from __future__ import annotations

import pytest

from nats_cluster import NatsCluster


@pytest.fixture
def nats_server(tmp_path):
    """One nats-server with JetStream."""
    with NatsCluster(tmp_path / "nats", size=1) as server:
        yield server


@pytest.fixture
def nats_cluster(tmp_path):
    """A JetStream cluster of three servers; streams made on it may have 3 replicas."""
    with NatsCluster(tmp_path / "nats", size=3) as cluster:
        yield cluster
