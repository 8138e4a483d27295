"""Which Redis a URL names: one server, or a cluster by its scheme."""

from __future__ import annotations

import pytest

from engine.runtime.redis_clients import cluster_url


@pytest.mark.parametrize(("url", "plain"), [
    ("redis+cluster://10.0.0.5:7000/0", "redis://10.0.0.5:7000/0"),
    ("REDISS+CLUSTER://user:pw@node:7000/0", "rediss://user:pw@node:7000/0"),
    ("redis://127.0.0.1:6379/0", None),
    ("unix:///run/redis.sock", None),
    ("redis+cluster:", None),
])
def test_a_cluster_is_named_by_its_scheme(url: str, plain: str | None) -> None:
    assert cluster_url(url) == plain
