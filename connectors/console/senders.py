"""Who the broker sees when the console sends: the console for command centres, each
department as itself.

Under the secure profile a department's answer goes out under the department's own principal
(``engine/runtime/department_credentials.py``), so the broker authorises it with that
department's ACLs and its logs name the department, not the console. One acknowledging
producer per department that has acted, made on first use: a county has a hundred
departments, and most never sign in to the console.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from engine.runtime.department_credentials import as_department
from engine.runtime.kafka import KafkaUnavailable
from engine.runtime.producer import AckedProducer
from engine.runtime.settings import Settings


class Senders:
    """The console's own producer, and one per department that has acted."""

    def __init__(self, settings: Settings, own: AckedProducer,
                 passwords: Mapping[str, str]) -> None:
        self.settings, self.own, self.passwords = settings, own, dict(passwords)
        self._departments: dict[str, AckedProducer] = {}
        self._lock = threading.Lock()

    def for_department(self, department: str) -> AckedProducer:
        """The producer that sends as ``department``; KafkaUnavailable naming the missing
        credentials when the broker authenticates and the console has none for it."""
        settings = as_department(self.settings, department, self.passwords)
        if settings is None:
            raise KafkaUnavailable(
                f"the console has no broker credentials for {department}: give them with "
                "'griddispatch acl password --departments FILE' and start the console with "
                "--department-credentials FILE")
        if settings is self.settings:  # no authentication: one producer serves everyone
            return self.own
        with self._lock:
            producer = self._departments.get(department)
            if producer is None:
                producer = self._departments[department] = AckedProducer(settings)
            return producer

    def close(self) -> None:
        with self._lock:
            for producer in self._departments.values():
                producer.close()
            self._departments.clear()
        self.own.close()
