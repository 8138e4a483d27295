"""Connectors, by direction: what comes in, what is carried over, what goes out.

* ``intake``: the HTTP server (Open311, the JSON API, keys, limits, the read model) and
  ``publish``, the one entry onto ``incidents.reported``;
* ``channels``: adapters that map one reporting channel's records onto the intake contract
  (12345 hotline, grid app, sensors);
* ``bridges``: MQTT, Kafka and file replay, feeding the intake from other systems;
* ``outgoing``: webhooks to the departments' own systems.

``errors.AdapterError`` and ``deadletter`` are shared by all of them.
"""
