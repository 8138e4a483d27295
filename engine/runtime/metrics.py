"""Every Prometheus metric griddispatch exports, defined in this one module.

Why one module: prometheus_client registers a metric globally when it is constructed, so a
second definition of the same name anywhere raises at import time, and two workers that each
invent a name for "records rejected" break every dashboard and alert in ``ops/``. Defining
them here keeps names, units (seconds, never milliseconds) and label sets reviewable in one
place, and lets ``ops/`` alert rules and runbooks point at exactly one definition.

Labels are bounded: outcomes, reasons (closed ``Literal`` sets in ``engine.contracts``),
worker and stage names. Never incident, case or channel ids: each new label value is a new
time series held forever by Prometheus.
"""

from __future__ import annotations

import sys
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

# --- classify -------------------------------------------------------------------------------

CLASSIFY_RECORDS = Counter(
    "griddispatch_classify_records",
    "Intake reports the classify stage turned into a record, by outcome "
    "(classified, triage, rejected).",
    ["outcome"],
)
TRIAGE = Counter(
    "griddispatch_triage",
    "Reports sent to incidents.triage because no rule decided, by reason "
    "(unplaced, unclassified, ...).",
    ["reason"],
)
URGENT_TRIAGE = Counter(
    "griddispatch_triage_urgent",
    "Reports judged danger to life (gas, fire, people trapped or hurt, self-harm, missing "
    "people, violence) that went to incidents.triage instead of a department, by reason: "
    "each one waits for a person, so any is alerted.",
    ["reason"],
)
CLASSIFIED_BY = Counter(
    "griddispatch_classified_by",
    "Reports dispatched automatically, by what decided the matter (matter_code, "
    "channel_category, keywords, model).",
    ["by"],
)
REJECTED = Counter(
    "griddispatch_rejected",
    "Reports sent to incidents.rejected because they cannot be an incident, by reason "
    "(malformed_json, unknown_field, ...).",
    ["reason"],
)
CLASSIFY_SECONDS = Histogram(
    "griddispatch_classify_seconds",
    "Time spent deciding one report (validation, placing, classifying, priority), "
    "excluding Kafka I/O.",
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
             0.1, 0.25, 0.5, 1.0),
)

# --- rules hot reload ------------------------------------------------------------------------

RULES_RELOAD_SUCCESS = Gauge(
    "griddispatch_rules_reload_success",
    "1 if the last attempt to load the rule files succeeded, 0 if it failed and the "
    "previous rule set is still serving.",
)
RULES_RELOAD = Counter(
    "griddispatch_rules_reload",
    "Attempts to reload the rule files after they changed or on SIGHUP, by outcome "
    "(success, failure).",
    ["outcome"],
)
RULES_REVISION = Gauge(
    "griddispatch_rules_revision_info",
    "The rule-set revision (content hash) this process serves: 1 for the serving revision; "
    "older revisions are removed.",
    ["revision"],
)
RULES_LAST_RELOAD = Gauge(
    "griddispatch_rules_last_reload_timestamp_seconds",
    "Unix time at which the serving rule set was loaded (at start or by the last "
    "successful reload).",
)

# --- every worker ----------------------------------------------------------------------------

WORKER_ERRORS = Counter(
    "griddispatch_worker_errors",
    "Unexpected errors a worker caught and survived (the record or tick was skipped), by "
    "worker and stage.",
    ["worker", "stage"],
)
CONSUMER_LAG = Gauge(
    "griddispatch_consumer_lag",
    "Records on a topic that a worker's consumer group has not committed yet (sum over "
    "partitions; last stable offset minus committed offset), sampled every 15 s by each "
    "member of the group: take max by (group, topic), not sum.",
    ["group", "topic"],
)

# --- route -----------------------------------------------------------------------------------

ROUTE_RECORDS = Counter(
    "griddispatch_route_records",
    "Records the route worker processed in committed transactions, by outcome (assigned, "
    "merged, duplicate, updated, rerouted, rejected).",
    ["outcome"],
)
ASSIGNMENTS = Counter(
    "griddispatch_assignments",
    "Assignment records published to departments (new, update and reassigned; lead and "
    "assisting), by platform and department.",
    ["platform", "department"],
)
ROUTE_SECONDS = Histogram(
    "griddispatch_route_seconds",
    "Time from an incident's reported_at to the dispatch of the case it opened.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0),
)
OPEN_CASES = Gauge(
    "griddispatch_open_cases",
    "Cases not yet closed in the partitions this route worker owns, by state.",
    ["state"],
)
ROUTE_TRANSACTIONS = Counter(
    "griddispatch_route_transactions",
    "Kafka transactions of the route worker, by outcome (committed, aborted).",
    ["outcome"],
)
ROUTE_BATCH_SECONDS = Histogram(
    "griddispatch_route_batch_seconds",
    "Wall time of one route batch by phase: routing its records (process), then waiting "
    "for its offsets to join the transaction (offsets; sent while routing), then committing "
    "(commit). Every record of a batch waits for all three before a department can read "
    "its assignment.",
    ["phase"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
ROUTE_BATCH_RECORDS = Histogram(
    "griddispatch_route_batch_records",
    "Records in one route batch (one Kafka transaction).",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
)
ROUTE_REBUILDS = Counter(
    "griddispatch_route_rebuilds",
    "Times the route worker rebuilt its case store from the cases topic, by reason "
    "(assigned, aborted, step_error).",
    ["reason"],
)

# --- SLA timers and escalations ----------------------------------------------------------------

SLA_ESCALATIONS = Counter(
    "griddispatch_escalations",
    "Escalation records published, by department (the assignee whose limit it is), limit "
    "(accept, resolve) and step (warning, breach, or ladder level1, level2, ...).",
    ["department", "limit", "step"],
)
TIMER_FIRES = Counter(
    "griddispatch_timer_fires",
    "Due timers claimed by a timer worker, by outcome (fired, stale: the case moved on or "
    "was rescheduled, so nothing was published).",
    ["outcome"],
)
TIMER_LATENESS = Histogram(
    "griddispatch_timer_lateness_seconds",
    "How long after its due time a timer fired.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)
TIMERS_PENDING = Gauge(
    "griddispatch_timers_pending",
    "Open cases waiting in the Redis timer index (one entry each, due at its next timer), "
    "as last counted by a timer worker; every worker counts all shards: aggregate with max.",
)
TIMERS_REPAIRED = Counter(
    "griddispatch_timers_repaired",
    "Open cases whose timers were missing or wrong in Redis and were restored from the cases "
    "topic, by reason (rebuild: Redis was empty; audit: the periodic check found a gap).",
    ["reason"],
)
SLA_CASES = Gauge(
    "griddispatch_sla_open_cases",
    "Open cases with running time limits, by lead department and state (dispatched, "
    "accepted, reopened), as of a timer worker's last audit of the cases topic (every worker "
    "reads all of it: aggregate with max, not sum).",
    ["department", "state"],
)

SLA_BREACHED_CASES = Gauge(
    "griddispatch_sla_breached_open_cases",
    "Open cases past their acceptance or resolution limit, by lead department and state, as "
    "of a timer worker's last audit (a subset of griddispatch_sla_open_cases: aggregate "
    "with max, not sum).",
    ["department", "state"],
)
DEPARTMENT_INFO = Gauge(
    "griddispatch_department_info",
    "1 for each department of the serving rule set, with its name: alerts join on it to name "
    "a department in words (group_left(name)).",
    ["department", "name"],
)

CALENDAR_COVERED_UNTIL = Gauge(
    "griddispatch_calendar_covered_until_timestamp_seconds",
    "End of the last day the holiday data (the chinesecalendar package) covers, as Unix "
    "time; working-time limits past it count a provisional calendar (statutory holidays "
    "only).",
)
CALENDAR_PROVISIONAL = Gauge(
    "griddispatch_calendar_provisional",
    "1 while this year's or next year's holidays are provisional: computed from the statutory "
    "rules because no State Council notice is entered or packaged yet; 0 otherwise.",
)

# --- intake (griddispatch intake: Open311, JSON API, channel adapters) ---------------------------

INTAKE_REQUESTS = Counter(
    "griddispatch_intake_requests",
    "Reports offered to the intake server, by channel (open311, hotline, gridapp, api, ...) and "
    "result (accepted, duplicate, invalid, unauthorized, rate_limited, too_large, unavailable).",
    ["channel", "result"],
)
INTAKE_SECONDS = Histogram(
    "griddispatch_intake_seconds",
    "Time from an intake request's arrival to the broker's acknowledgement of its report(s).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)

# --- connectors (MQTT sensors, department Kafka bridges, replay) and webhooks -------------------

REDIS_ERRORS = Counter(
    "griddispatch_redis_errors",
    "Redis calls that failed (unreachable, refused), by what they were for (rate_limit, "
    "dedup_check, dedup_mark, request_view, read_model); the intake went on without them: "
    "duplicates are not caught and rate limits not applied meanwhile.",
    ["what"],
)
CONNECTOR_MESSAGES = Counter(
    "griddispatch_connector_messages",
    "Messages a bridge took from its source, by connector (mqtt, kafka, replay) and result "
    "(accepted, duplicate, deadletter, invalid).",
    ["connector", "result"],
)
CONNECTOR_CONNECTED = Gauge(
    "griddispatch_connector_connected",
    "1 while a bridge is connected to its source and subscribed (mqtt: SUBACK received; kafka: "
    "partitions assigned), else 0, by connector.",
    ["connector"],
)
DEAD_LETTERS = Counter(
    "griddispatch_dead_letters",
    "Records parked on a dead-letter topic for a person to look at, by topic (intake.deadletter, "
    "webhooks.deadletter) and reason (intake: malformed_json, unknown_device, invalid_payload, "
    "unmappable, internal_error; webhooks: gave_up, refused, not_configured).",
    ["topic", "reason"],
)
WEBHOOK_DELIVERIES = Counter(
    "griddispatch_webhook_deliveries",
    "Webhook POST outcomes, by department and result (delivered; retried: an attempt failed "
    "and another follows; parked: given up and put on webhooks.deadletter).",
    ["department", "result"],
)


# --- console --------------------------------------------------------------------------------

CONSOLE_ACTIONS = Counter(
    "griddispatch_console_actions",
    "Console actions by people, by action (dispatch, reject, accepted, resolved, verified, "
    "supervised, redispatched, ...) and result (sent: on Kafka; refused: the form was wrong "
    "or the user may not; failed: Kafka did not take it).",
    ["action", "result"],
)
CONSOLE_TRIAGE_WAITING = Gauge(
    "griddispatch_console_triage_waiting",
    "Triaged reports waiting for a person in the console's view, urgent or not (the whole "
    "territory's queue, as the console read it from incidents.triage).",
    ["urgent"],
)
CONSOLE_LOGINS = Counter(
    "griddispatch_console_logins",
    "Console sign-ins, by result (ok, refused: wrong user name or password).",
    ["result"],
)

# What each kind of process exports. A process serves only the metrics it owns: an intake
# that exported the rules-reload gauge at its default 0 fired "rules reload failed", and a
# calendar gauge at 0 made "holiday data ends in -20794 days" (min over processes).
RULES = (RULES_RELOAD_SUCCESS, RULES_RELOAD, RULES_REVISION, RULES_LAST_RELOAD)
CALENDAR = (CALENDAR_COVERED_UNTIL, CALENDAR_PROVISIONAL)
OWNED: dict[str, tuple[MetricWrapperBase, ...]] = {
    "classify": (CLASSIFY_RECORDS, TRIAGE, URGENT_TRIAGE, CLASSIFIED_BY, REJECTED,
                 CLASSIFY_SECONDS, *RULES, WORKER_ERRORS, CONSUMER_LAG),
    "route": (ROUTE_RECORDS, ASSIGNMENTS, ROUTE_SECONDS, OPEN_CASES, ROUTE_TRANSACTIONS,
              ROUTE_BATCH_SECONDS, ROUTE_BATCH_RECORDS, ROUTE_REBUILDS, *RULES, *CALENDAR,
              WORKER_ERRORS, CONSUMER_LAG),
    "timers": (SLA_ESCALATIONS, TIMER_FIRES, TIMER_LATENESS, TIMERS_PENDING, TIMERS_REPAIRED,
               SLA_CASES, SLA_BREACHED_CASES, DEPARTMENT_INFO, *RULES, *CALENDAR,
               WORKER_ERRORS, CONSUMER_LAG),
    "intake": (INTAKE_REQUESTS, INTAKE_SECONDS, DEAD_LETTERS, REDIS_ERRORS),
    "bridge": (CONNECTOR_MESSAGES, CONNECTOR_CONNECTED, DEAD_LETTERS, WORKER_ERRORS),
    "webhooks": (WEBHOOK_DELIVERIES, DEAD_LETTERS, WORKER_ERRORS),
    "console": (CONSOLE_ACTIONS, CONSOLE_TRIAGE_WAITING, CONSOLE_LOGINS),
}
_registries: dict[str, CollectorRegistry] = {}


def registry(process: str) -> CollectorRegistry:
    """The registry a process of this kind serves: its own metrics, and the standard process
    and Python collectors (memory, CPU, open files, GC). The metrics themselves also live in
    the default registry, where tests read them in-process."""
    if process not in _registries:
        owned = CollectorRegistry()
        for metric in OWNED[process]:
            owned.register(metric)
        ProcessCollector(registry=owned)
        PlatformCollector(registry=owned)
        GCCollector(registry=owned)
        _registries[process] = owned
    return _registries[process]


def serve_metrics(port: int, process: str, host: str = "127.0.0.1") -> None:
    """Serve ``/metrics`` from a daemon thread; raises OSError when the port is taken."""
    start_http_server(port, addr=host, registry=registry(process))


def exposition(process: str) -> bytes:
    """The ``/metrics`` body of a process that has its own HTTP server (intake, console)."""
    return generate_latest(registry(process))


def all_metrics() -> tuple[MetricWrapperBase, ...]:
    """Every metric of this module, in definition order: new ones join the table by existing."""
    return tuple(value for value in globals().values() if isinstance(value, MetricWrapperBase))


def reference_table() -> str:
    """The README's metrics reference, generated from the definitions so it cannot drift.

    ``python -m engine.runtime.metrics`` prints it; a unit test checks the README holds it verbatim.
    """
    rows = ["| metric | type | labels | meaning |", "|---|---|---|---|"]
    for metric in all_metrics():  # prometheus_client has no public accessors for these three
        kind = metric._type
        name = metric._name + ("_total" if kind == "counter" else "")
        labels = ", ".join(metric._labelnames) or "-"
        rows.append(f"| `{name}` | {kind} | {labels} | {metric._documentation} |")
    return "\n".join(rows)


def update_readme(readme: Path) -> bool:
    """Rewrite the table between the README's markers; True when it changed."""
    text = readme.read_text(encoding="utf-8")
    head, rest = text.split(_TABLE_START, 1)
    tail = rest.split(_TABLE_END, 1)[1]
    new = f"{head}{_TABLE_START}{reference_table()}{_TABLE_END}{tail}"
    readme.write_text(new, encoding="utf-8")
    return new != text


_TABLE_START, _TABLE_END = "<!-- metrics-table -->\n", "\n<!-- /metrics-table -->"

if __name__ == "__main__":
    if sys.argv[1:2] == ["--update"]:
        update_readme(Path(sys.argv[2] if len(sys.argv) > 2 else "README.md"))
    else:
        print(reference_table())
