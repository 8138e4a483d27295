"""``griddispatch dept watch|accept|return|progress|pause|resume|resolve|verify``: departments.

A department reads its own topic ``assignments.<code>`` and answers on ``assignments.status``.
Both carry plain JSON values, string keys and a ``schema`` header, so a department's own
systems can do the same with any Kafka client (kcat, a Java consumer); this is the reference
client and what a duty officer runs at a desk.

``watch`` reads as the consumer group ``dept-<code>`` and commits each assignment after it is
shown: a restarted watch continues where the last one stopped, and the first watch of a
department starts at the beginning of the topic, so nothing dispatched before it is missed.

An answer (``accept``, ``return``…) waits for the route worker's verdict: the worker may
refuse it (an illegal transition, a department not on the case); a client that printed
"sent" and exited 0 would leave the officer believing a case was accepted that was not. The
worker answers every update of a known department on that department's own
``verdicts.<code>`` (applied, with the case's new state and lead, or refused, with the
reason), the only answer the broker's ACLs let a department read. ``--no-wait`` keeps
fire-and-forget for scripts that follow that topic themselves.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import sys
import time
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition
from pydantic import ValidationError

from engine.cases.dispatch import VERDICTS_TOPIC
from engine.cases.records import Assignment, StatusAction, StatusUpdate
from engine.cli.options import Commands, add_rules_dir, command, group
from engine.contracts import to_json
from engine.reference.departments import DepartmentRegistry
from engine.runtime import kafka
from engine.runtime.settings import Settings

# Departments work in China Standard Time; times are shown and stamped in it.
LOCAL = timezone(timedelta(hours=8), "CST")
CASE_ID = re.compile(r"^\d{6}(\d{3})?-[0-9a-f]{12}$")
STATUS_TOPIC = "assignments.status"
# Exit codes of the answering verbs, beside 1 (a failure) and 2 (bad usage) as everywhere.
EXIT_REFUSED = 2  # the route worker refused the update: like bad usage, sending it again fails
EXIT_NO_ANSWER = 3  # sent, but no verdict in time: it may still apply, or the worker is down
DEFAULT_WAIT = 30.0
ANSWER_EPILOG = (
    "The command waits for the route worker's verdict. Exit codes: 0 applied; 1 a failure "
    "(Kafka unreachable, topics missing, unknown department, not sent); 2 bad usage, or "
    "refused by the route worker (the reason is printed); 3 sent, but no verdict within "
    "--wait seconds (is 'griddispatch worker route' running?). With --no-wait: 0 once the "
    "broker has the update.")
VERBS: dict[str, tuple[StatusAction, str]] = {
    "accept": ("accepted", "accept (签收) a case you lead"),
    "return": ("returned", "return (回退) a case outside your remit, with --note giving why"),
    "progress": ("progress", "report progress on a case you lead or assist"),
    "pause": ("paused", "stop the SLA clocks while waiting on the reporter (待补充), with --note"),
    "resume": ("resumed", "restart the SLA clocks of a paused case"),
    "resolve": ("resolved", "report a case resolved (办结), with --note giving the result"),
    "verify": ("verified", "record the verification (核查/回访) of a resolved case"),
    "backlog": ("backlog_requested", "ask a command centre to put a case you lead on the "
                                     "tracked backlog (挂账), with --note and --review"),
    "approve-backlog": ("backlog_approved", "approve a pending backlog request, as a command "
                                            "centre: the resolution clock stops"),
    "refuse-backlog": ("backlog_refused", "refuse a pending backlog request, as a command "
                                          "centre, --note giving why"),
    "release-backlog": ("backlog_released", "take a case off the backlog: its resolution "
                                            "clock runs again"),
    "stage": ("stage_completed", "report one stage of a staged limit done (e.g. stop_work), "
                                 "on a case you lead, with --stage"),
    "unreachable": ("callback_unreachable", "record a call-back (回访) that reached nobody; "
                                            "after the policy's tries the case closes as "
                                            "unreachable"),
    "extend": ("extension_requested", "ask your supervisor for more time (延期) to resolve a "
                                      "case you lead, with --by and --note giving why"),
    "approve-extension": ("extension_approved", "grant the pending extension of a case you "
                                                "supervise (or as a command centre)"),
    "refuse-extension": ("extension_refused", "refuse the pending extension of a case you "
                                              "supervise (or as a command centre), --note "
                                              "giving why"),
}
# (title, display columns); the description takes what is left of a ~120-column line.
COLUMNS = (("time", 5), ("case_id", 22), ("kind", 10), ("role", 6), ("priority", 8),
           ("matter", 16), ("grid", 15), ("description", 30))
FLUSH_SECONDS = 20.0


def register(commands: Commands) -> None:
    verbs = group(commands, "dept", dest="verb")
    watch = command(verbs, "dept watch", dept_watch)
    _dept_options(watch)
    watch.add_argument("--json", action="store_true",
                       help="print each assignment's JSON value as one line")
    watch.add_argument("--from-beginning", action="store_true",
                       help="re-read the whole topic, not only what this department has not seen")
    watch.add_argument("--max", type=_positive, metavar="N", help="stop after N assignments")
    for verb, (action, text) in VERBS.items():
        sub = verbs.add_parser(verb, help=text, description=text[0].upper() + text[1:] + ".",
                               aliases=["ack"] if verb == "accept" else [],
                               epilog=ANSWER_EPILOG)
        sub.add_argument("case_id", metavar="CASE_ID", help="e.g. 330110005-ab954bb01bbe")
        _dept_options(sub)
        sub.add_argument("--note", required=verb in ("return", "resolve", "extend", "backlog"),
                         metavar="TEXT",
                         help="the reason (required to return or extend), the result "
                              "(required to resolve) or progress, at most 2000 characters")
        if verb == "stage":
            sub.add_argument("--stage", required=True, metavar="NAME",
                             help="the stage's name in the case's policy, e.g. stop_work")
        if verb == "backlog":
            sub.add_argument("--review", required=True, type=_review_time, metavar="WHEN",
                             dest="review_at",
                             help="when to review the case: an ISO date or time "
                                  "(+08:00 when no offset is given), e.g. 2027-03-01")
        if verb == "extend":
            sub.add_argument("--by", required=True, metavar="DURATION", dest="extend_by",
                             help="the time asked for, in the case's unit (working time "
                                  "for most matters): e.g. 3d, 8h")
        if verb == "verify":
            sub.add_argument("--satisfied", required=True, choices=("yes", "no"),
                             help="the reporter's answer; 'no' reopens the case")
        waiting = sub.add_mutually_exclusive_group()
        waiting.add_argument("--wait", type=_seconds, default=DEFAULT_WAIT, metavar="SECONDS",
                             help="how long to wait for the route worker to apply or refuse "
                                  f"the update (default {DEFAULT_WAIT:.0f}); exit 3 without "
                                  "a verdict")
        waiting.add_argument("--no-wait", action="store_true",
                             help="exit once the broker has the update, without the verdict")
        sub.set_defaults(handler=dept_send, action=action)


def _dept_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dept", required=True, metavar="CODE",
                        help="your department code, e.g. 330110005.zhzf")
    add_rules_dir(parser)


def _review_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO date or time, got '{text}'") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=LOCAL)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got '{text}'")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got '{text}'")
    return value


# --- checks -----------------------------------------------------------------------------------

def unknown_department(code: str, rules_dir: Path) -> str | None:
    """A sentence for an operator when ``code`` is not in the registry, else None."""
    path = rules_dir / "reference" / "departments.yaml"
    registry = DepartmentRegistry.load(path)  # FileProblems → printed by main, exit 1
    if code in registry:
        return None
    close = difflib.get_close_matches(code, list(registry.by_code), n=3, cutoff=0.8)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return f"unknown department '{code}': not in {path}{hint}"


def case_id_problem(case_id: str) -> str | None:
    if CASE_ID.match(case_id):
        return None
    return (f"'{case_id}' is not a case id: expected the place code (6 or 9 digits), '-' and "
            "12 hex digits, e.g. 330110005-ab954bb01bbe")


def _require_topic(settings: Settings, *topics: str) -> str | None:
    """Fails fast and clearly when Kafka does not answer or a topic was never created
    (producing to a missing topic would wait for a timeout, or auto-create a wrong one).
    librdkafka's own log is silenced here: without a broker it prints a line every 50 ms,
    and the error below says it once, with what to do."""
    admin = kafka.admin_client(settings)
    kafka.broker_count(admin, settings)  # KafkaUnavailable → printed by main, exit 1
    existing = admin.list_topics(timeout=10).topics
    missing = [topic for topic in topics if topic not in existing]
    if not missing:
        return None
    return (f"topic {missing[0]} does not exist at {settings.kafka_bootstrap}; create the "
            "topics with 'griddispatch topics apply'")


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


# --- watch ------------------------------------------------------------------------------------

def display_width(text: str) -> int:
    """Terminal columns: Chinese characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def fit(text: str, columns: int) -> str:
    """Cut to ``columns`` display columns (ending in '…' when cut), then pad to them."""
    text = " ".join(text.split())  # newlines and tabs would break the row
    if display_width(text) > columns:
        kept, used = [], 0
        for char in text:
            used += display_width(char)
            if used > columns - 1:
                break
            kept.append(char)
        text = "".join(kept) + "…"
    return text + " " * (columns - display_width(text))


def header() -> str:
    return "  ".join(fit(title, width) for title, width in COLUMNS).rstrip()


def table_row(assignment: Assignment) -> str:
    a = assignment
    cells = (a.assigned_at.astimezone(LOCAL).strftime("%H:%M"), a.case_id, a.kind, a.role,
             a.priority, a.matter_name, a.grid_code or "-", a.description)
    return "  ".join(fit(cell, width) for cell, (_, width) in zip(cells, COLUMNS, strict=True)
                     ).rstrip()


def render(value: bytes | None, as_json: bool) -> str | None:
    """The line to print for one record value, or None when it is not an assignment.

    JSON mode passes any JSON object through untouched (a newer schema version still shows);
    the table needs the fields of ``griddispatch.assignment/1``.
    """
    if value is None:
        return None
    if as_json:
        try:
            text = value.decode("utf-8")
            data: Any = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        return text if "\n" not in text else json.dumps(data, ensure_ascii=False)
    try:
        return table_row(Assignment.model_validate_json(value))
    except ValidationError:
        return None


def dept_watch(args: argparse.Namespace, settings: Settings) -> int:
    rules_dir = args.rules_dir if args.rules_dir is not None else settings.rules_dir
    problem = unknown_department(args.dept, rules_dir)
    if problem:
        return _fail(problem, 1)
    topic = settings.topic(f"assignments.{args.dept}")
    problem = _require_topic(settings, topic)
    if problem:
        return _fail(problem, 1)
    consumer = kafka.consumer(settings, f"dept-{args.dept}")

    def rewind(client: Consumer, partitions: list[TopicPartition]) -> None:
        for partition in partitions:
            partition.offset = OFFSET_BEGINNING
        client.assign(partitions)

    if args.from_beginning:
        consumer.subscribe([topic], on_assign=rewind)
    else:
        consumer.subscribe([topic])
    if not args.json:
        print(header(), flush=True)
    try:
        return _watch_loop(consumer, args.json, args.max)
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # piped into head or less, which had enough: not a failure
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        consumer.close()


def _watch_loop(consumer: Consumer, as_json: bool, limit: int | None) -> int:
    shown = 0
    while limit is None or shown < limit:
        message: Message | None = consumer.poll(1.0)
        if message is None:
            continue
        error = message.error()
        if error is not None:
            if error.fatal() or error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                return _fail(f"Kafka: {error.str()}", 1)
            print(f"warning: Kafka: {error.str()}", file=sys.stderr)
            continue
        line = render(message.value(), as_json)
        if line is None:
            print(f"warning: skipped offset {message.offset()} of {message.topic()}: not an "
                  "assignment record", file=sys.stderr)
        else:
            print(line, flush=True)
            shown += 1
        consumer.commit(message=message, asynchronous=False)
    return 0


# --- answers ----------------------------------------------------------------------------------

def partition_key_of(case_id: str) -> str:
    """Status updates are keyed like the case's records, so its route worker receives them."""
    return case_id.split("-", 1)[0]


def status_update(action: StatusAction, case_id: str, department: str, note: str | None,
                  satisfied: str | None, now: datetime | None = None,
                  extend_by: str | None = None,
                  review_at: datetime | None = None, stage: str | None = None) -> StatusUpdate:
    """Raises ValidationError for a note over the contract's limit."""
    return StatusUpdate(case_id=case_id, department=department, action=action,
                        at=now if now is not None else datetime.now(LOCAL), note=note or "",
                        satisfied=None if satisfied is None else satisfied == "yes",
                        extend_by=extend_by, review_at=review_at, stage=stage)


@dataclass(frozen=True)
class Applied:
    """The route worker applied the update: the case as it is now."""

    state: str
    lead: str


@dataclass(frozen=True)
class Refused:
    """The route worker refused the update (``StatusRejected.reason`` and ``detail``)."""

    reason: str
    detail: str


Verdict = Applied | Refused


def verdict_in(update: StatusUpdate, value: bytes | None) -> Verdict | None:
    """``value`` (a record of ``verdicts.<dept>``) when it answers ``update``: same case,
    department, action and time (the time makes it this very update, not an earlier one of
    the same officer).

    Read as plain JSON: a route worker newer than this client may add fields to the verdict,
    and must not turn an answer into a timeout.
    """
    try:
        verdict = json.loads(value) if value is not None else None
    except ValueError:
        return None
    if not isinstance(verdict, dict):
        return None
    try:
        at = datetime.fromisoformat(str(verdict.get("at")))
    except ValueError:
        return None
    if (verdict.get("case_id"), verdict.get("department"), verdict.get("action"), at) != (
            update.case_id, update.department, update.action, update.at):
        return None
    if verdict.get("outcome") == "applied":
        return Applied(str(verdict.get("state")), str(verdict.get("lead")))
    return Refused(str(verdict.get("reason")), str(verdict.get("detail", "")))


def describe_verdict(update: StatusUpdate, verdict: Verdict | None, waited: float) -> str:
    """The one line an officer reads: what was done, and what became of it."""
    what = f"{update.action} {update.case_id} by {update.department}"
    if isinstance(verdict, Applied):
        return f"applied: {what}; the case is now {verdict.state}, lead {verdict.lead}"
    if isinstance(verdict, Refused):
        return f"refused: {what}: {verdict.reason}: {verdict.detail}"
    return (f"no answer: {what} was sent, but the route worker neither applied nor refused it "
            f"within {waited:g}s (is 'griddispatch worker route' running?); it may still "
            "apply: watch the case before sending it again")


class VerdictReader:
    """Reads the department's own ``verdicts.<dept>`` from its end of *before* the update is
    sent, so the verdict cannot slip past unseen, however fast the worker is.

    The end is the high watermark fetched now (``kafka.end_offsets``), not OFFSET_END: a
    consumer resolves OFFSET_END only when it starts fetching, which may be after the worker
    answered. The department's own group id (the only one its ACLs allow), but partitions
    assigned and nothing committed: the group's offsets do not move and any number of
    clients can wait at once. read_committed, as the worker's records are transactional.
    """

    def __init__(self, settings: Settings, department: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        topic = settings.topic(VERDICTS_TOPIC.format(department=department))
        positions = [TopicPartition(topic, partition, end)
                     for partition, end in kafka.end_offsets(settings, topic, deadline).items()]
        self.consumer = kafka.consumer(settings, f"dept-{department}")
        self.consumer.assign(positions)

    def wait(self, update: StatusUpdate, seconds: float) -> Verdict | None:
        """The verdict on ``update``, or None when none came within ``seconds``."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            for message in self.consumer.consume(100, min(left, 0.5)):
                error = message.error()
                if error is not None:
                    if error.fatal():
                        raise kafka.KafkaUnavailable(f"Kafka: {error.str()}")
                    continue
                verdict = verdict_in(update, message.value())
                if verdict is not None:
                    return verdict
        return None

    def close(self) -> None:
        self.consumer.close()


def dept_send(args: argparse.Namespace, settings: Settings) -> int:
    problem = case_id_problem(args.case_id)
    if problem:
        return _fail(problem, 2)
    rules_dir = args.rules_dir if args.rules_dir is not None else settings.rules_dir
    problem = unknown_department(args.dept, rules_dir)
    if problem:
        return _fail(problem, 1)
    try:
        update = status_update(args.action, args.case_id, args.dept, args.note,
                               getattr(args, "satisfied", None),
                               extend_by=getattr(args, "extend_by", None),
                               review_at=getattr(args, "review_at", None),
                               stage=getattr(args, "stage", None))
    except ValidationError as exc:
        error = exc.errors()[0]
        field = "--by" if error["loc"] and error["loc"][0] == "extend_by" else "--note"
        return _fail(f"{field}: {error['msg']}", 2)
    topic = settings.topic(STATUS_TOPIC)
    answers = () if args.no_wait else (
        settings.topic(VERDICTS_TOPIC.format(department=args.dept)),)
    problem = _require_topic(settings, topic, *answers)
    if problem:
        return _fail(problem, 1)
    reader = None if args.no_wait else VerdictReader(settings, args.dept)
    try:
        problem = _send(settings, topic, update)
        if problem:
            return _fail(f"not sent: {problem}", 1)
        if reader is None:
            print(f"sent: {update.action} {update.case_id} by {update.department}")
            return 0
        verdict = reader.wait(update, args.wait)
    finally:
        if reader is not None:
            reader.close()
    line = describe_verdict(update, verdict, args.wait)
    if isinstance(verdict, Applied):
        print(line)
        return 0
    print(line, file=sys.stderr)
    return EXIT_REFUSED if isinstance(verdict, Refused) else EXIT_NO_ANSWER


def _send(settings: Settings, topic: str, update: StatusUpdate) -> str | None:
    """Produce ``update`` and wait for the broker's acknowledgement; why not, else None."""
    failures: list[str] = []

    def delivered(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            failures.append(error.str())

    producer = kafka.producer(settings, **{"message.timeout.ms": int(FLUSH_SECONDS * 750)})
    producer.produce(topic, key=partition_key_of(update.case_id).encode(),
                     value=to_json(update), headers=[("schema", update.schema_.encode())],
                     on_delivery=delivered)
    if producer.flush(FLUSH_SECONDS) or failures:
        return failures[0] if failures else f"no acknowledgement within {FLUSH_SECONDS:.0f}s"
    return None


__all__ = ["register"]
