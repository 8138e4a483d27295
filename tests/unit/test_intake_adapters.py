"""Channel adapters: sample payloads in, the expected intake report out; bad ones named."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from connectors.channels.gridapp import from_gridapp
from connectors.channels.hotline import category_path, from_hotline
from connectors.errors import AdapterError
from engine.contracts import IntakeReport
from engine.reference.channels import ChannelMaps

REPO = Path(__file__).resolve().parents[2]
CST = timezone(timedelta(hours=8))
HOTLINE_CATEGORIES = set(ChannelMaps.load(REPO / "rules/reference/channels.yaml")
                         .maps["hotline"])

WORK_ORDER: dict[str, Any] = {
    "工单编号": "ZJ12345-20261124-000187",
    "诉求内容": "仓前街道太炎社区门口井盖缺失，晚上很危险",
    "诉求分类": "城市管理-市政设施-井盖",
    "发生地址": "余杭区仓前街道太炎社区文一西路口",
    "来电时间": "2026-11-24 09:30:00",
    "来电人": "王女士",
    "联系电话": "13912345678",
    "经度": "119.9921",
    "纬度": 30.2912,
    "紧急程度": "紧急",
    "受理坐席": "A-017",
}

APP_REPORT: dict[str, Any] = {
    "report_id": "GA-330110005001-20261124-0003",
    "worker_id": "W-330110005001-07",
    "grid_code": "330110005001001",
    "reported_at": "2026-11-24T10:05:00+08:00",
    "description": "小区东门垃圾乱堆放三天无人清运",
    "matter_code": "100101",
    "location": {"lat": 30.2901, "lon": 119.9917},
    "photos": ["https://oss.example.cn/grid/2026/11/24/a1.jpg",
               "https://oss.example.cn/grid/2026/11/24/a2.jpg"],
    "worker_name": "李网格",
}


def test_hotline_work_order_maps_onto_the_contract() -> None:
    report = from_hotline(WORK_ORDER, HOTLINE_CATEGORIES)
    assert report == IntakeReport(
        channel="hotline", channel_id="ZJ12345-20261124-000187",
        reported_at=datetime(2026, 11, 24, 9, 30, tzinfo=CST),
        description="仓前街道太炎社区门口井盖缺失，晚上很危险",
        channel_category="城市管理/市政设施/井盖",
        address="余杭区仓前街道太炎社区文一西路口",
        reporter={"name": "王女士", "phone": "13912345678"},
        location={"lat": 30.2912, "lon": 119.9921},
        attributes={"urgency": "紧急", "hotline_category": "城市管理-市政设施-井盖"})
    assert report.reported_at.utcoffset() == timedelta(hours=8)


def test_hotline_minimal_order_with_iso_time() -> None:
    report = from_hotline({"工单编号": 187, "诉求内容": "路灯不亮",
                           "来电时间": "2026-11-24T01:30:00Z"})
    assert report.channel_id == "187"
    assert report.reported_at == datetime(2026, 11, 24, 9, 30, tzinfo=CST)
    assert report.location is None and report.reporter is None and report.attributes == {}


def test_hotline_category_cut_to_the_longest_mapped_path() -> None:
    assert category_path("城市管理／市政设施／井盖／井盖缺失", HOTLINE_CATEGORIES) == \
        "城市管理/市政设施/井盖"
    assert category_path("城乡建设 > 违法建设", HOTLINE_CATEGORIES) == "城乡建设/违法建设"
    assert category_path("其他/咨询", HOTLINE_CATEGORIES) == "其他/咨询"


@pytest.mark.parametrize(("change", "field"), [
    ({"工单编号": None}, "工单编号"),
    ({"诉求内容": ""}, "诉求内容"),
    ({"来电时间": "昨天上午"}, "来电时间"),
    ({"来电时间": None}, "来电时间"),
    ({"经度": None}, "经度"),
    ({"纬度": "北纬30度"}, "纬度"),
    ({"纬度": 130}, "纬度"),
    ({"联系电话": "1" * 60}, "联系电话"),
    ({"诉求内容": "很" * 4001}, "诉求内容"),
    ({"发生地址": ["余杭区"]}, "发生地址"),
])
def test_hotline_malformed_work_order_names_the_field(change: dict[str, Any],
                                                      field: str) -> None:
    with pytest.raises(AdapterError) as caught:
        from_hotline({**WORK_ORDER, **change}, HOTLINE_CATEGORIES)
    assert caught.value.field == field
    assert caught.value.reason


def test_gridapp_report_maps_onto_the_contract() -> None:
    report = from_gridapp(APP_REPORT)
    assert report == IntakeReport(
        channel="gridapp", channel_id="GA-330110005001-20261124-0003",
        grid_code="330110005001001", reported_at=datetime(2026, 11, 24, 10, 5, tzinfo=CST),
        description="小区东门垃圾乱堆放三天无人清运", matter_code="100101",
        location={"lat": 30.2901, "lon": 119.9917},
        attachments=APP_REPORT["photos"], reporter={"name": "李网格", "phone": None},
        attributes={"grid_worker_id": "W-330110005001-07"})


def test_gridapp_without_offset_is_china_time() -> None:
    report = from_gridapp({**APP_REPORT, "reported_at": "2026-11-24 10:05:00"})
    assert report.reported_at == datetime(2026, 11, 24, 10, 5, tzinfo=CST)


@pytest.mark.parametrize(("change", "field"), [
    ({"report_id": None}, "report_id"),
    ({"worker_id": ""}, "worker_id"),
    ({"grid_code": None}, "grid_code"),
    ({"grid_code": "33011000500100"}, "grid_code"),
    ({"matter_code": "12-02"}, "matter_code"),
    ({"photos": ["https://ok.example/a.jpg", "file:///sdcard/b.jpg"]}, "photos[1]"),
    ({"photos": "https://ok.example/a.jpg"}, "photos"),
    ({"photos": [f"https://ok.example/{i}.jpg" for i in range(21)]}, "photos"),
    ({"location": {"lat": 30.2}}, "location"),
    ({"location": {"lat": 30.2, "lon": "东经"}}, "location.lon"),
    ({"gps": [30.2, 119.9]}, "gps"),
    ({"reported_at": "24/11/2026"}, "reported_at"),
])
def test_gridapp_malformed_report_names_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(AdapterError) as caught:
        from_gridapp({**APP_REPORT, **change})
    assert caught.value.field == field


def test_not_an_object() -> None:
    with pytest.raises(AdapterError):
        from_hotline(["工单"])  # type: ignore[arg-type]
    with pytest.raises(AdapterError):
        from_gridapp("report")  # type: ignore[arg-type]
