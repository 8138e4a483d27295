"""Webhook delivery, the pure part: back-off, ids, signatures, the retry loop, the config."""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

import pytest

from connectors.outgoing.webhooks.config import load_config
from connectors.outgoing.webhooks.delivery import (
    Answer,
    Backoff,
    Rejected,
    backoff_delay,
    deliver,
    delivery_id,
    headers,
    signature,
    verify,
)
from engine.reference.departments import DepartmentRegistry
from engine.yamlfile import FileProblems

REPO = Path(__file__).resolve().parents[2]
SECRET = b"0123456789abcdef-test-secret"


@pytest.fixture(scope="module")
def departments() -> DepartmentRegistry:
    return DepartmentRegistry.load(REPO / "rules" / "reference" / "departments.yaml")


def test_backoff_doubles_up_to_the_cap_without_jitter() -> None:
    policy = Backoff(first=1, factor=2, max=10, jitter=0.5)
    assert [backoff_delay(n, policy, 0.0) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


def test_jitter_takes_at_most_its_fraction_off() -> None:
    policy = Backoff(first="2s", factor=3, max="1m", jitter=0.25)
    for n in range(1, 8):
        full = min(60.0, 2.0 * 3 ** (n - 1))
        assert backoff_delay(n, policy, 0.999999) == pytest.approx(full * 0.75, rel=1e-5)
        assert full * 0.75 <= backoff_delay(n, policy, 0.5) <= full


def test_retry_numbers_start_at_one() -> None:
    with pytest.raises(ValueError):
        backoff_delay(0, Backoff(), 0.0)


def test_delivery_id_is_sha1_of_topic_partition_offset() -> None:
    expected = hashlib.sha1(b"assignments.330110.scjg:0:42").hexdigest()
    assert delivery_id("assignments.330110.scjg", 0, 42) == expected
    assert delivery_id("assignments.330110.scjg", 0, 43) != expected


NOW = 1_796_000_000.0  # 2026-11-30, in Unix seconds


def test_signature_is_the_standard_webhooks_hmac_of_id_time_and_body() -> None:
    body = '{"case_id":"330110012-ab","description":"占道经营"}'.encode()
    signed = b"abc." + str(int(NOW)).encode() + b"." + body
    expected = "v1," + base64.b64encode(hmac.new(SECRET, signed, hashlib.sha256).digest()).decode()
    sent = headers("330110.scjg", "assignments.330110.scjg", "abc", SECRET, body, NOW)
    assert sent["webhook-signature"] == expected == signature(SECRET, "abc", int(NOW), body)
    assert (sent["webhook-id"], sent["webhook-timestamp"]) == ("abc", str(int(NOW)))
    assert (sent["X-Griddispatch-Delivery"], sent["X-Griddispatch-Topic"]) == (
        "abc", "assignments.330110.scjg")
    assert verify(SECRET, body, sent, now=NOW + 10) == "abc"


def rejection(body: bytes, sent: dict[str, str], now: float = NOW,
              secret: bytes = SECRET) -> str:
    with pytest.raises(Rejected) as caught:
        verify(secret, body, sent, now=now)
    return str(caught.value)


def test_a_replayed_tampered_or_unsigned_delivery_is_rejected_with_why() -> None:
    body = b'{"case_id":"330110012-ab"}'
    sent = headers("330110.scjg", "assignments.330110.scjg", "abc", SECRET, body, NOW)
    assert "more than 300 s" in rejection(body, sent, now=NOW + 301)   # replayed later
    assert "more than 300 s" in rejection(body, sent, now=NOW - 301)   # clock far ahead
    assert rejection(body + b" ", sent) == "bad signature"             # body changed
    assert rejection(body, {**sent, "webhook-id": "abd"}) == "bad signature"  # id changed
    later = str(int(NOW) + 60)
    assert rejection(body, {**sent, "webhook-timestamp": later}, now=NOW + 60) == "bad signature"
    assert rejection(body, sent, secret=b"another-secret-0123") == "bad signature"
    assert "missing" in rejection(body, {"Content-Type": "application/json"})
    # Header names in any case; several signatures while a secret is rotated.
    upper = {k.upper(): v for k, v in sent.items()}
    upper["WEBHOOK-SIGNATURE"] = "v1,b2xk " + sent["webhook-signature"]
    assert verify(SECRET, body, upper, now=NOW) == "abc"


@pytest.mark.parametrize(("answer", "retryable"), [
    (Answer(None, "connection refused"), True), (Answer(500), True), (Answer(503), True),
    (Answer(429), True), (Answer(408), True), (Answer(400), False), (Answer(404), False),
    (Answer(301), False), (Answer(401), False)])
def test_what_is_worth_retrying(answer: Answer, retryable: bool) -> None:
    assert answer.retryable is retryable


class Receiver:
    """Answers from a script; records the waits the loop asked for."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.posts = 0
        self.waits: list[float] = []

    def post(self) -> Answer:
        self.posts += 1
        return self.answers.pop(0)

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        return True


POLICY = Backoff(first=1, factor=2, max=100, jitter=0)


def test_deliver_retries_until_the_receiver_answers_2xx() -> None:
    receiver = Receiver(Answer(500), Answer(None, "timeout"), Answer(204))
    retried: list[Answer] = []
    outcome = deliver(receiver.post, 5, POLICY, receiver.wait, lambda: 0.0, retried.append)
    assert (outcome.delivered, outcome.attempts, receiver.waits) == (True, 3, [1.0, 2.0])
    assert len(retried) == 2


def test_deliver_gives_up_after_the_attempts_and_says_why() -> None:
    receiver = Receiver(*[Answer(503)] * 3)
    outcome = deliver(receiver.post, 3, POLICY, receiver.wait, lambda: 0.0)
    assert (outcome.delivered, outcome.attempts, outcome.park_reason) == (False, 3, "gave_up")
    assert outcome.last == Answer(503) and receiver.waits == [1.0, 2.0]


def test_a_final_answer_is_parked_at_once() -> None:
    receiver = Receiver(Answer(500), Answer(410, "Gone"))
    outcome = deliver(receiver.post, 8, POLICY, receiver.wait, lambda: 0.0)
    assert (outcome.attempts, outcome.park_reason, outcome.last) == (2, "refused",
                                                                     Answer(410, "Gone"))


def test_stopping_during_a_wait_neither_delivers_nor_parks() -> None:
    receiver = Receiver(Answer(500), Answer(200))
    outcome = deliver(receiver.post, 5, POLICY, lambda s: False, lambda: 0.0)
    assert (outcome.stopped, outcome.delivered, outcome.park_reason) == (True, False, None)
    assert receiver.posts == 1


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "webhooks.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_config_merges_defaults_and_reads_secrets_from_the_environment(
        tmp_path: Path, departments: DepartmentRegistry) -> None:
    path = config(tmp_path, """
defaults: {timeout: 5s, attempts: 4, backoff: {first: 0.5, max: 1m}}
departments:
  330110.scjg: {url: "https://scjg.example.gov.cn/hook", secret_env: SCJG_SECRET}
  330110005.zhzf:
    url: http://127.0.0.1:8080/hook
    secret: "0123456789abcdef"
    timeout: 2
    topics: [escalations]
""")
    targets = load_config(path, departments, env={"SCJG_SECRET": "s" * 32})
    scjg, zhzf = targets["330110.scjg"], targets["330110005.zhzf"]
    assert (scjg.secret, scjg.timeout, scjg.attempts, scjg.topics) == (
        b"s" * 32, 5.0, 4, ("assignments", "escalations"))
    assert (scjg.backoff.first, scjg.backoff.max, scjg.backoff.factor) == (0.5, 60.0, 2.0)
    assert (zhzf.timeout, zhzf.topics) == (2.0, ("escalations",))
    # 4 attempts of 5 s and waits of 0.5 + 1 + 2 s at most
    assert scjg.worst_case_seconds() == pytest.approx(23.5)


def test_config_problems_name_line_and_fix(tmp_path: Path,
                                           departments: DepartmentRegistry) -> None:
    path = config(tmp_path, """departments:
  330110.scjg: {url: "https://a.example/h", secret_env: MISSING_SECRET}
  330110999.nobody: {url: "https://b.example/h", secret: "0123456789abcdef"}
  330110.zhzf: {url: "https://c.example/h", secret: short}
""")
    with pytest.raises(FileProblems) as caught:
        load_config(path, departments, env={})
    text = str(caught.value)
    assert f"{path}:2: department '330110.scjg': environment variable MISSING_SECRET" in text
    assert f"{path}:3: unknown department '330110999.nobody'" in text
    assert f"{path}:4: department '330110.zhzf': the secret must have at least 16" in text


def test_config_needs_exactly_one_secret_source(tmp_path: Path,
                                                departments: DepartmentRegistry) -> None:
    path = config(tmp_path, """departments:
  330110.scjg: {url: "https://a.example/h"}
  330110.zhzf: {url: "ftp://a.example/h", secret: "0123456789abcdef"}
""")
    with pytest.raises(FileProblems) as caught:
        load_config(path, departments, env={})
    text = str(caught.value)
    assert f"{path}:2: departments.330110.scjg: Value error, give exactly one of 'secret' or " \
           "'secret_env'" in text
    assert f"{path}:3: departments.330110.zhzf.url: Value error, 'ftp://a.example/h' is not " \
           "an http:// or https:// URL" in text
