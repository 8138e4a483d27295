"""The local broker's cluster id is always one the storage tool accepts."""

from __future__ import annotations

import base64
import uuid

import pytest

from engine.cli.stack import kafka_broker


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    dashed = uuid.UUID(bytes=base64.urlsafe_b64decode("-" + "A" * 21 + "=="))
    draws = iter([dashed, uuid.UUID(int=1)])
    monkeypatch.setattr(kafka_broker.uuid, "uuid4", lambda: next(draws))
    assert base64.urlsafe_b64encode(dashed.bytes).decode().startswith("-")
    chosen = kafka_broker.cluster_id()
    assert not chosen.startswith("-") and len(chosen) == 22
