"""The console in a real browser (Debian's chromium), on the real broker with the real classify
and route workers: a report no rule could decide appears live in the county centre's queue,
is dispatched with one click on a suggestion, the lead department accepts and resolves it in
its own view, the centre verifies it, and the map shows it. Refusals: another department
gets 403 for the case, an assisting department sees only a masked phone, and a POST without
its CSRF token is refused.

With ``GRIDDISPATCH_SCREENSHOTS=1`` the screenshots go to ``docs/screenshots/`` (the README's).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from playwright.sync_api import Browser, Page, expect

from connectors.console.accounts import User, UsersFile, hash_password
from connectors.console.context import Console
from connectors.console.server import build, create_app
from engine.cases.lifecycle import case_id_for
from engine.classify import classify_data
from engine.cli import main
from engine.console.access import Operator
from engine.console.actions import DispatchForm, default_route, manual_dispatch
from engine.contracts import IntakeReport, Triage, to_json
from engine.rules.load import load_rules
from engine.runtime import acl_admin, kafka
from engine.runtime.settings import Settings
from tests.integration.browser import LOCALE, TIMEZONE, VIEWPORT, screenshot, serving
from tests.integration.workers import REPO, apply_topics, running

pytestmark = pytest.mark.integration

PASSWORD = "correct-horse-9"
PHONE = "13900001111"
MATTER = "090101"  # 占道经营: the classifier's runner-up for this text, accepted by a click
TEXT = "小区里有人在卖东西"


def report(channel_id: str) -> IntakeReport:
    return IntakeReport(channel="hotline", channel_id=channel_id,
                        reported_at=datetime.now(UTC), description=TEXT,
                        address="余杭区五常街道", reporter={"name": "李先生", "phone": PHONE})


def add_user(path: Path, username: str, name: str, role: str, scope: str | None) -> None:
    users = UsersFile.load(path)
    users.add(User(username=username, name=name, role=role, scope=scope,  # type: ignore[arg-type]
                   password_hash=hash_password(PASSWORD)))
    users.save()


def sign_in(page: Page, url: str, username: str) -> None:
    page.goto(f"{url}/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("header.top")).to_contain_text(username)


@pytest.fixture
def console(kafka_settings: Settings, tmp_path: Path) -> Iterator[tuple[Console, str]]:
    settings = kafka_settings.with_(rules_dir=REPO / "rules")
    apply_topics(settings)
    users = tmp_path / "users.yaml"
    add_user(users, "zhang", "张主任", "county", "330110")
    with running(settings, "classify", tmp_path / "classify.log"), \
            running(settings, "route", tmp_path / "route.log"):
        built = build(settings, users, department_passwords=department_passwords(settings))
        built.feed.start()
        try:
            with serving(create_app(built)) as url:
                yield built, url
        finally:
            built.feed.stop()
            if built.senders is not None:
                built.senders.close()


def department_passwords(settings: Settings) -> dict[str, str]:
    """On the secure test broker, the ACLs of this test's prefix and every department's
    password: the departments' answers below go out as their own principals, as in
    production (on the plain broker there is nothing to give)."""
    if not any(key.startswith("sasl.") for key, _ in settings.kafka_extra):
        return {}
    acl_admin.apply_plan(settings)
    return acl_admin.set_passwords(kafka.admin_client(settings),
                                   [d.code for d in load_rules(REPO / "rules").departments])


def new_page(browser: Browser) -> Page:
    context = browser.new_context(viewport=VIEWPORT, locale=LOCALE, timezone_id=TIMEZONE)
    return context.new_page()


def test_a_triaged_report_goes_from_the_queue_to_a_closed_case(
        console: tuple[Console, str], page: Page, browser: Browser, kafka_settings: Settings,
        tmp_path: Path) -> None:
    built, url = console
    sign_in(page, url, "zhang")
    expect(page).to_have_url(f"{url}/triage")

    # 1. a report the rules cannot decide appears in the open queue, without a reload
    sent = report(f"console-{time.time_ns()}")
    ruleset = load_rules(REPO / "rules")
    triage = classify_data(ruleset, sent.model_dump(mode="json"), datetime.now(UTC))
    assert isinstance(triage, Triage) and MATTER in [s.matter_code for s in triage.suggestions]
    producer = kafka.producer(kafka_settings)
    producer.produce(kafka_settings.topic("incidents.reported"), key=sent.incident_id,
                     value=to_json(sent))
    assert producer.flush(10) == 0
    del producer  # no client left retrying once the session's broker stops
    row = page.locator(f'tr[data-incident="{sent.incident_id}"]')
    expect(row).to_be_visible(timeout=90_000)
    screenshot(page, "console-triage")

    # 2. open it and dispatch with one click on a suggestion
    row.get_by_role("link", name="分拨").click()
    expect(page.locator(".report .text")).to_contain_text("卖东西")
    expect(page.locator(".report")).to_contain_text(PHONE)  # a centre calls back
    screenshot(page, "console-triage-item")
    page.click(f'button.suggestion[data-matter="{MATTER}"]')
    expect(page.locator(".flash.ok")).to_contain_text("已派遣")
    expect(page.locator(f'tr[data-incident="{sent.incident_id}"]')).to_have_count(
        0, timeout=60_000)

    county = Operator("zhang", "张主任", "county", "330110")
    route = default_route(built.ruleset, triage, MATTER, county, datetime.now(UTC))
    assert route is not None
    expected = manual_dispatch(built.ruleset, triage, DispatchForm(matter_code=MATTER), county,
                               datetime.now(UTC)).classified
    case_id = case_id_for(expected)
    add_user(built.users, "lead", "执法中队", "department", route.lead)
    add_user(built.users, "outsider", "别的部门", "department", "330110009.zhzf")

    # 3. the lead department sees it in its own view, accepts and resolves it
    lead = new_page(browser)
    sign_in(lead, url, "lead")
    expect(lead).to_have_url(f"{url}/cases")
    lead_row = lead.locator(f'tr[data-case="{case_id}"]')
    expect(lead_row).to_be_visible(timeout=60_000)
    lead_row.get_by_role("link", name=case_id).click()
    # 占道经营 is handled at the place: the lead sees the reporter masked (engine/privacy.py)
    expect(lead.locator(".reporter")).to_contain_text("139****1111")
    expect(lead.locator(".reporter")).not_to_contain_text(PHONE)
    lead.click('button[name=action][value=accept]')
    expect(lead.locator("span.state")).to_have_attribute("data-state", "accepted",
                                                         timeout=60_000)
    lead.fill("#note", "已到现场劝离，摊位已清理")
    lead.click('button[name=action][value=resolve]')
    expect(lead.locator("span.state")).to_have_attribute("data-state", "resolved",
                                                         timeout=60_000)
    screenshot(lead, "console-department-case", tmp_path)

    # refusals: a POST without the CSRF token, another department's request for the case
    refused = lead.request.post(f"{url}/cases/{case_id}/action", form={"action": "progress"})
    assert refused.status == 403 and "CSRF" in refused.text()
    outsider = new_page(browser)
    sign_in(outsider, url, "outsider")
    forbidden = outsider.goto(f"{url}/cases/{case_id}")
    assert forbidden is not None and forbidden.status == 403
    assert PHONE not in outsider.content()
    if route.assist:
        add_user(built.users, "assist", "协办部门", "department", route.assist[0])
        helper = new_page(browser)
        sign_in(helper, url, "assist")
        helper.goto(f"{url}/cases/{case_id}")
        expect(helper.locator(".reporter")).to_contain_text("139****1111")
        assert PHONE not in helper.content()

    # 4. the county centre verifies it: closed
    page.goto(f"{url}/cases/{case_id}")
    expect(page.locator("span.state")).to_have_attribute("data-state", "resolved")
    page.select_option("#satisfied", "yes")
    page.click("button:has-text('核查回访')")
    expect(page.locator("span.state")).to_have_attribute("data-state", "closed",
                                                         timeout=60_000)
    expect(page.locator("ol.history")).to_contain_text("核查回访")
    screenshot(page, "console-case")

    # 5. the map shows it, coloured as done, over the grid polygons
    page.goto(f"{url}/map")
    expect(page.locator(f'#map-list li[data-case="{case_id}"]')).to_have_attribute(
        "data-sla", "done", timeout=30_000)
    expect(page.locator("path.leaflet-interactive").first).to_be_visible()
    assert page.locator("path.case-marker").count() >= 1
    screenshot(page, "console-map")

    page.goto(f"{url}/numbers")
    expect(page.locator("#numbers")).to_contain_text("hotline")
    screenshot(page, "console-numbers")

    # 6. the decision is on triage.decisions, and comes back as an example candidate
    out = tmp_path / "candidates.yaml"
    assert main(["--bootstrap", kafka_settings.kafka_bootstrap, "--topic-prefix",
                 kafka_settings.topic_prefix, "rules", "examples", "harvest", "--out", str(out),
                 "--rules-dir", str(REPO / "rules")]) == 0
    candidates = out.read_text(encoding="utf-8")
    assert yaml.safe_load(candidates)["items"] == {MATTER: {"hotline": [TEXT]}}
    assert "zhang" in candidates
