"""Stream workers: the runtime that moves records between topics around the pure core.

Each worker kind is a Kafka consumer group that scales with partitions (docs/design.md "Scale");
the decisions themselves live in pure modules (``engine.classify``, ``engine.rules``) so that
``simulate``, ``rules explain`` and the tests make exactly the decisions a worker makes.
"""
