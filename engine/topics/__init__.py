"""Topics as code: ``topics/*.yaml`` is the truth (``spec``); the cluster is made to match it
by ``engine.runtime.topic_admin``."""
