"""The runtime: everything that talks to Kafka, Redis or the network around the pure core.

Kafka clients and their configuration (``kafka``, ``producer``), Redis connections
(``redis_clients``), the stream workers (``workers``), the timer store and its rebuild
(``timer_store``, ``timer_restore``), consumer lag, topic administration, the report's read of
``cases`` and the metrics server. It calls the core (``engine.classify``, ``engine.rules``,
``engine.cases``, ``engine.sla``) for every decision and decides nothing itself; the CLI
(``engine.cli``) and ``connectors`` sit above it. ``tests/unit/test_layers.py`` checks it.
"""
