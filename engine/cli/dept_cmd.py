"""``griddispatch dept watch|accept|return|progress|pause|resume|resolve|verify``: departments.

A department reads its own topic ``assignments.<code>`` and answers on ``assignments.status``.
Both carry plain JSON values, string keys and a ``schema`` header, so a department's own
systems can do the same with any Kafka client (kcat, a Java consumer); this is the reference
client and what a duty officer runs at a desk.

``watch`` reads as the consumer group ``dept-<code>`` and commits each assignment after it is
shown: a restarted watch continues where the last one stopped, and the first watch of a
department starts at the beginning of the topic, so nothing dispatched before it is missed.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import sys
import unicodedata
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition
from pydantic import ValidationError

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
VERBS: dict[str, tuple[StatusAction, str]] = {
    "accept": ("accepted", "accept (签收) a case you lead"),
    "return": ("returned", "return (回退) a case outside your remit, with --note giving why"),
    "progress": ("progress", "report progress on a case you lead or assist"),
    "pause": ("paused", "stop the SLA clocks while waiting on the reporter (待补充), with --note"),
    "resume": ("resumed", "restart the SLA clocks of a paused case"),
    "resolve": ("resolved", "report a case resolved (办结), with --note giving the result"),
    "verify": ("verified", "record the verification (核查/回访) of a resolved case"),
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
                               aliases=["ack"] if verb == "accept" else [])
        sub.add_argument("case_id", metavar="CASE_ID", help="e.g. 330110005-ab954bb01bbe")
        _dept_options(sub)
        sub.add_argument("--note", required=verb == "return", metavar="TEXT",
                         help="the reason (required to return), result or progress, "
                              "at most 2000 characters")
        if verb == "verify":
            sub.add_argument("--satisfied", required=True, choices=("yes", "no"),
                             help="the reporter's answer; 'no' reopens the case")
        sub.set_defaults(handler=dept_send, action=action)


def _dept_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dept", required=True, metavar="CODE",
                        help="your department code, e.g. 330110005.zhzf")
    add_rules_dir(parser)


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


def _require_topic(settings: Settings, topic: str) -> str | None:
    """Fails fast and clearly when Kafka does not answer or the topic was never created
    (producing to a missing topic would wait for a timeout, or auto-create a wrong one).
    librdkafka's own log is silenced here: without a broker it prints a line every 50 ms,
    and the error below says it once, with what to do."""
    admin = kafka.admin_client(settings)
    kafka.broker_count(admin, settings)  # KafkaUnavailable → printed by main, exit 1
    if topic in admin.list_topics(timeout=10).topics:
        return None
    return (f"topic {topic} does not exist at {settings.kafka_bootstrap}; create the topics "
            "with 'griddispatch topics apply'")


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
                  satisfied: str | None, now: datetime | None = None) -> StatusUpdate:
    """Raises ValidationError for a note over the contract's limit."""
    return StatusUpdate(case_id=case_id, department=department, action=action,
                        at=now if now is not None else datetime.now(LOCAL), note=note or "",
                        satisfied=None if satisfied is None else satisfied == "yes")


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
                               getattr(args, "satisfied", None))
    except ValidationError as exc:
        return _fail(f"--note: {exc.errors()[0]['msg']}", 2)
    topic = settings.topic(STATUS_TOPIC)
    problem = _require_topic(settings, topic)
    if problem:
        return _fail(problem, 1)
    failures: list[str] = []

    def delivered(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            failures.append(error.str())

    producer = kafka.producer(settings, **{"message.timeout.ms": int(FLUSH_SECONDS * 750)})
    producer.produce(topic, key=partition_key_of(update.case_id).encode(),
                     value=to_json(update), headers=[("schema", update.schema_.encode())],
                     on_delivery=delivered)
    if producer.flush(FLUSH_SECONDS) or failures:
        reason = failures[0] if failures else f"no acknowledgement within {FLUSH_SECONDS:.0f}s"
        return _fail(f"not sent: {reason}", 1)
    print(f"sent: {update.action} {update.case_id} by {update.department}")
    return 0


__all__ = ["register"]
