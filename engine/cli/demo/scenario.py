"""The demo feed of ``make run``: realistic reports from every channel, deterministic by seed.

Places are real divisions and (synthetic) grids of the sample county; descriptions are built
from the matter catalogue's own keywords inside ordinary sentences, so the rules stage meets
what it meets in production: most reports classify, some merge with an open case, some go to
triage, a few are rejected, and channels re-send now and then.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from engine.calendar import SHANGHAI
from engine.reference.grid_shapes import inner_point
from engine.reference.places import Grid
from engine.rules import RuleSet

CHANNELS = ("hotline", "gridapp", "open311", "sensor", "api")
WEIGHTS = (30, 30, 15, 10, 15)
OPENERS = ("{place}", "{place}附近", "我家在{place}，", "{place}这边")
CLOSERS = ("，请尽快派人处理。", "，已经好几天了。", "，麻烦看一下。", "，影响大家出行。", "。")
VAGUE = ("这里有点问题，请派人来看看", "反映一个情况，具体见面再说", "有事情想咨询一下")
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡"


@dataclass(frozen=True)
class DemoReport:
    """One thing a channel sends: where to (``channel``) and the channel's own payload."""

    channel: str  # hotline | gridapp | open311 | sensor | api
    payload: dict[str, Any]
    expect: str  # what the demo means it to become: new, merge, resend, triage, reject
    device: str | None = None  # sensor: the device id (the MQTT topic names it)
    key: str | None = None  # open311: the Idempotency-Key header (the request's channel id)


class DemoFeed:
    def __init__(self, ruleset: RuleSet, devices: dict[str, dict[str, Any]],
                 seed: int = 20261124, run: str | None = None) -> None:
        self.ruleset, self.devices = ruleset, devices
        # Part of every channel id: the intake remembers (channel, channel id) for 30 days, so
        # ids that restarted at 1 each run made a second run on the same day all duplicates.
        self.run = run or datetime.now(SHANGHAI).strftime("%H%M%S")
        self.rng = random.Random(seed)
        self.grids = sorted(ruleset.jurisdiction.grids.values(), key=lambda g: g.code)
        self.matters = [m for m in ruleset.matters.by_code.values() if m.keywords]
        self.open311 = [m.category for m in ruleset.channels.maps.get("open311", {}).values()]
        self.hotline = list(ruleset.channels.maps.get("hotline", {}))
        self.recent: list[DemoReport] = []
        self.count = 0

    def stream(self, now: datetime | None = None) -> Iterator[DemoReport]:
        while True:
            yield self.next(now or datetime.now(UTC))

    def next(self, now: datetime) -> DemoReport:
        self.count += 1
        roll = self.rng.random()
        if self.recent and roll < 0.05:
            previous = self.rng.choice(self.recent)
            return DemoReport(previous.channel, previous.payload, "resend", previous.device)
        if self.recent and roll < 0.15:
            return self._again(self.rng.choice(self.recent), now)
        channel = self.rng.choices(CHANNELS, WEIGHTS)[0]
        report = self._new(channel, now, vague=roll > 0.95)
        self.recent = [*self.recent[-30:], report]
        return report

    # --- one new report ----------------------------------------------------------------------

    def _place(self) -> tuple[Grid, str, str]:
        grid = self.rng.choice(self.grids)
        community = self.ruleset.jurisdiction.divisions[grid.community]
        township = self.ruleset.jurisdiction.divisions[community.parent or ""]
        return grid, township.name, community.name

    def _sentence(self, place: str, vague: bool) -> tuple[str, str | None]:
        if vague:
            return f"{place}{self.rng.choice(VAGUE)}", None
        matter = self.rng.choice(self.matters)
        keyword = self.rng.choice(matter.keywords)
        opener = self.rng.choice(OPENERS).format(place=place)
        return f"{opener}{keyword}{self.rng.choice(CLOSERS)}", matter.code

    def _person(self) -> dict[str, str]:
        name = self.rng.choice(SURNAMES) + self.rng.choice(("先生", "女士"))
        return {"name": name, "phone": f"13{self.rng.randrange(10**9):09d}"}

    def _new(self, channel: str, now: datetime, vague: bool) -> DemoReport:
        grid, township, community = self._place()
        lat, lon = inner_point(grid)
        description, _ = self._sentence(community, vague)
        expect = "triage" if vague else "new"
        local = now.astimezone(SHANGHAI)
        ident = self._ident(local)
        if channel == "hotline":
            person = self._person()
            payload = {"工单编号": f"ZJ12345-{ident}", "诉求内容": description,
                       "发生地址": f"杭州市余杭区{township}{community}",
                       "来电时间": local.strftime("%Y-%m-%d %H:%M:%S"),
                       "来电人": person["name"], "联系电话": person["phone"],
                       "紧急程度": "一般"}
            if self.hotline and self.rng.random() < 0.3 and not vague:
                payload["诉求分类"] = self.rng.choice(self.hotline)
            return DemoReport(channel, payload, expect)
        if channel == "gridapp":
            worker = f"WG{grid.code[-9:]}"
            return DemoReport(channel, {
                "report_id": f"GA-{ident}", "worker_id": worker, "grid_code": grid.code,
                "reported_at": local.isoformat(), "description": description,
                "location": {"lat": lat, "lon": lon},
                "photos": [f"https://gridapp.example.cn/photos/{ident}.jpg"]}, expect)
        if channel == "open311" and self.open311 and not vague:
            code = self.rng.choice(self.open311)
            return DemoReport(channel, {
                "service_code": code, "lat": str(lat), "long": str(lon),
                "description": description, "first_name": self._person()["name"]}, expect,
                key=f"OS-{ident}")
        if channel == "sensor" and self.devices and not vague:
            device = self.rng.choice(sorted(self.devices))
            return DemoReport(channel, {"alarm_id": f"AL-{ident}", "time": local.isoformat(),
                                        "message": "demo alarm"}, "new", device)
        report: dict[str, Any] = {"channel": "api", "channel_id": f"API-{ident}",
                                   "reported_at": local.isoformat(), "description": description,
                                   "location": {"lat": lat, "lon": lon},
                                   "reporter": self._person()}
        if self.rng.random() < 0.1:  # a client that sends a grid code that does not exist
            report = {**report, "grid_code": "330110999999999"}
            report.pop("location")
            expect = "reject"
        return DemoReport("api", report, expect)

    def _ident(self, local: datetime) -> str:
        return f"{local:%Y%m%d}-{self.run}-{self.count:05d}"

    def _again(self, first: DemoReport, now: datetime) -> DemoReport:
        """Someone else reports the same thing a little later, at the same spot."""
        local = now.astimezone(SHANGHAI)
        payload = dict(first.payload)
        if first.channel == "gridapp":
            payload["report_id"] = f"GA-{self._ident(local)}"
            payload["reported_at"] = local.isoformat()
        elif first.channel == "hotline":
            payload["工单编号"] = f"ZJ12345-{self._ident(local)}"
            payload["来电时间"] = local.strftime("%Y-%m-%d %H:%M:%S")
        elif first.channel == "sensor":
            payload["alarm_id"] = f"AL-{self._ident(local)}"
            payload["time"] = local.isoformat()
        elif first.channel == "api":
            payload["channel_id"] = f"API-{self._ident(local)}"
            payload["reported_at"] = local.isoformat()
        key = f"OS-{self._ident(local)}" if first.channel == "open311" else None
        return DemoReport(first.channel, payload, "merge", first.device, key)

