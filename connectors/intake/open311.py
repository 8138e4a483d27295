"""Open311 GeoReport v2, the pure part: services, service definitions, a form → a report.

The services we offer are the ``open311`` entries of ``rules/reference/channels.yaml``: the
``service_code`` is the category, which the classify stage maps onto a matter code exactly
like a hotline category, so an Open311 request is classified by the citizen's choice of
service, not by guessing from the text. ``service_name`` and ``description`` are Chinese;
``group`` is the platform (综治工作, 市场监管, 综合执法, 便民服务); ``keywords`` are the matter
catalogue's keywords of the mapped item; ``metadata`` is true when the entry has attributes.

Idempotency. GeoReport v2 has no client request id, yet the intake contract needs a
channel id. A client that can send an ``Idempotency-Key`` header gets exactly-once per key;
otherwise the channel id is a hash of the request's own content plus its China-time date,
so a client retrying the same POST on the same day gets the same ``service_request_id``
back, and the same text posted again another day is a new request.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from connectors.channels.fields import SHANGHAI, field_name
from engine.contracts import IntakeReport
from engine.reference.channels import ChannelMaps, ServiceAttribute
from engine.reference.departments import DepartmentRegistry
from engine.reference.matters import MatterCatalogue

SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"
CHANNEL = "open311"
MAX_RANGE = timedelta(days=90)
MAX_REQUESTS = 1000
STATUSES = ("open", "closed")
PLATFORM_NAMES = {"governance": "综治工作", "market": "市场监管", "enforcement": "综合执法",
                  "services": "便民服务"}
DEFAULT_NOTICE = "已受理：系统将自动分类并派遣至责任部门，可凭 service_request_id 查询办理进度"
_ATTRIBUTE = re.compile(r"^attribute\[([^\[\]]+)\](\[\])?$")
_KEPT = ("email", "device_id", "account_id", "address_id", "jurisdiction_id")


class Open311Error(Exception):
    """An answer per the spec's error list: ``[{code, description}]`` with that HTTP code."""

    def __init__(self, code: int, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description


@dataclass(frozen=True)
class Service:
    code: str
    name: str
    description: str
    group: str
    keywords: tuple[str, ...]
    matter: str
    notice: str
    attributes: tuple[ServiceAttribute, ...]


class Catalog:
    """What the Open311 endpoints and the request views look up: services, matters and
    department names, loaded once from the rules folder (reference data only)."""

    def __init__(self, matters: MatterCatalogue, channels: ChannelMaps,
                 departments: DepartmentRegistry) -> None:
        self.matters = matters
        self.departments = departments
        self.services: dict[str, Service] = {}
        self.by_matter: dict[str, Service] = {}
        for mapping in channels.maps.get(CHANNEL, {}).values():
            matter = matters.get(mapping.matter)
            platform = PLATFORM_NAMES[matter.platform] if matter else ""
            service = Service(
                code=mapping.category, name=mapping.name or (matter.name if matter else ""),
                description=mapping.description or (matter.name if matter else ""),
                group=mapping.group or platform, keywords=matter.keywords if matter else (),
                matter=mapping.matter, notice=mapping.notice or DEFAULT_NOTICE,
                attributes=tuple(mapping.attributes))
            self.services[service.code] = service
            self.by_matter.setdefault(service.matter, service)

    @classmethod
    def load(cls, rules_dir: Path) -> Catalog:
        reference = rules_dir / "reference"
        return cls(MatterCatalogue.load(reference / "matters.yaml"),
                   ChannelMaps.load(reference / "channels.yaml"),
                   DepartmentRegistry.load(reference / "departments.yaml"))

    def service_list(self) -> list[dict[str, Any]]:
        return [{"service_code": s.code, "service_name": s.name, "description": s.description,
                 "metadata": bool(s.attributes), "type": "realtime",
                 "keywords": ",".join(s.keywords), "group": s.group}
                for s in self.services.values()]

    def definition(self, code: str) -> dict[str, Any]:
        service = self.services.get(code)
        if service is None:
            raise Open311Error(404, f"service_code '{code}' not found; GET services lists them")
        return {"service_code": code, "attributes": [
            {"variable": True, "code": a.code, "datatype": a.datatype, "required": a.required,
             "datatype_description": a.datatype_description, "order": i + 1,
             "description": a.description,
             "values": [{"key": v.key, "name": v.name} for v in a.values]}
            for i, a in enumerate(service.attributes)]}

    def department_name(self, code: str) -> str:
        department = self.departments.by_code.get(code)
        return department.name if department else code

    def service_of(self, service_code: str, matter_code: str) -> tuple[str, str]:
        """(service_code, service_name) of a request: the Open311 service it was filed under,
        else the service offering its matter, else the matter code and name themselves."""
        service = self.services.get(service_code) or self.by_matter.get(matter_code)
        if service is not None:
            return service.code, service.name
        matter = self.matters.get(matter_code)
        return matter_code, matter.name if matter else ""


def discovery(base_url: str, changeset: datetime) -> dict[str, Any]:
    """The service discovery document (wiki.open311.org/Service_discovery)."""
    return {"changeset": changeset.isoformat(timespec="seconds"),
            "contact": "请联系所在区县社会治理综合指挥中心（12345 政务服务便民热线）",
            "key_service": "API keys are issued by the county command centre",
            "endpoints": [{"specification": SPECIFICATION, "url": f"{base_url}/open311/v2",
                           "changeset": changeset.isoformat(timespec="seconds"),
                           "type": "production",
                           "formats": ["text/xml", "application/json"]}]}


def _attribute_value(attribute: ServiceAttribute, values: list[str]) -> Any:
    name = f"attribute[{attribute.code}]"
    keys = {v.key for v in attribute.values}
    if attribute.datatype == "multivaluelist":
        bad = [v for v in values if v not in keys]
        if bad:
            raise Open311Error(400, f"{name}: '{bad[0]}' is not one of {', '.join(sorted(keys))}")
        return values
    if len(values) > 1:
        raise Open311Error(400, f"{name} takes one value")
    value = values[0]
    if attribute.datatype == "singlevaluelist" and value not in keys:
        raise Open311Error(400, f"{name}: '{value}' is not one of {', '.join(sorted(keys))}")
    if attribute.datatype == "number":
        try:
            return float(value)
        except ValueError:
            raise Open311Error(400, f"{name} must be a number") from None
    if attribute.datatype == "datetime":
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise Open311Error(400, f"{name} must be an ISO 8601 date and time") from None
    return value


def _attributes(service: Service, pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    given: dict[str, list[str]] = {}
    for key, value in pairs:
        match = _ATTRIBUTE.match(key)
        if match and value != "":
            given.setdefault(match.group(1), []).append(value)
    known = {a.code: a for a in service.attributes}
    for code in given:
        if code not in known:
            raise Open311Error(400, f"attribute[{code}] is not an attribute of service "
                                    f"'{service.code}'")
    out: dict[str, Any] = {}
    for attribute in service.attributes:
        if attribute.code in given:
            out[attribute.code] = _attribute_value(attribute, given[attribute.code])
        elif attribute.required:
            raise Open311Error(400, f"attribute[{attribute.code}] ({attribute.description}) is "
                                    f"required for service '{service.code}'")
    return out


def channel_id(pairs: Sequence[tuple[str, str]], client: str, now: datetime,
               idempotency_key: str | None) -> str:
    """The request's idempotency key (module docstring): per client key, else per content+day."""
    if idempotency_key:
        digest = hashlib.sha256(f"{client}\x00{idempotency_key}".encode()).hexdigest()
        return f"k-{digest[:32]}"
    content = "\x00".join(f"{k}={v}" for k, v in sorted(pairs) if k != "api_key")
    day = now.astimezone(SHANGHAI).strftime("%Y%m%d")
    digest = hashlib.sha256(f"{client}\x00{day}\x00{content}".encode()).hexdigest()
    return f"d-{day}-{digest[:24]}"


def report_from_form(pairs: Sequence[tuple[str, str]], catalog: Catalog, now: datetime, *,
                     client: str, idempotency_key: str | None = None) -> tuple[IntakeReport,
                                                                                Service]:
    """POST requests: the form → an intake report, or ``Open311Error(400)`` naming the field."""
    form: dict[str, str] = {}
    for key, value in pairs:
        form.setdefault(key, value.strip())
    code = form.get("service_code", "")
    if not code:
        raise Open311Error(400, "service_code is required; GET services lists them")
    service = catalog.services.get(code)
    if service is None:
        raise Open311Error(400, f"service_code '{code}' is not a service; GET services lists "
                                "them")
    has_point = bool(form.get("lat") or form.get("long"))
    if not (has_point or form.get("address_string") or form.get("address_id")):
        raise Open311Error(400, "a location is required: lat and long, address_string or "
                                "address_id")
    data: dict[str, Any] = {
        "channel": CHANNEL, "channel_id": channel_id(pairs, client, now, idempotency_key),
        "reported_at": now.astimezone(SHANGHAI), "channel_category": code,
        "description": form.get("description") or service.name,
    }
    if has_point:
        try:
            data["location"] = {"lat": float(form["lat"]), "lon": float(form["long"])}
        except (KeyError, ValueError):
            raise Open311Error(400, "lat and long must both be decimal degrees (WGS-84)") from None
    if form.get("address_string"):
        data["address"] = form["address_string"]
    name = (form.get("last_name", "") + form.get("first_name", "")).strip()
    if name or form.get("phone"):
        data["reporter"] = {"name": name or None, "phone": form.get("phone") or None}
    if form.get("media_url"):
        data["attachments"] = [form["media_url"]]
    attributes = _attributes(service, pairs)
    kept = {k: form[k] for k in _KEPT if form.get(k)}
    if kept:
        attributes["open311"] = kept
    data["attributes"] = attributes
    try:
        return IntakeReport.model_validate(data), service
    except ValidationError as exc:
        first = exc.errors()[0]
        where = field_name(first["loc"], {"location.lat": "lat", "location.lon": "long",
                                          "address": "address_string", "attachments": "media_url",
                                          "attachments.0": "media_url",
                                          "reporter.phone": "phone", "reporter.name": "last_name"})
        raise Open311Error(400, f"{where}: {first['msg']}") from None


@dataclass(frozen=True)
class RequestQuery:
    ids: tuple[str, ...] = ()
    codes: tuple[str, ...] = ()
    start: datetime | None = None
    end: datetime | None = None
    statuses: tuple[str, ...] = ()


def _when(value: str, name: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise Open311Error(400, f"{name} must be a w3 date-time, e.g. "
                                "2026-11-01T00:00:00+08:00") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=SHANGHAI)


def _csv(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


def parse_query(params: dict[str, str], now: datetime) -> RequestQuery:
    """GET requests filters: ids override everything; else a ≤ 90-day window (default: the
    last 90 days), service codes and statuses, each comma-separated."""
    ids = _csv(params.get("service_request_id"))
    if ids:
        return RequestQuery(ids=ids[:MAX_REQUESTS])
    given_start, given_end = params.get("start_date"), params.get("end_date")
    if given_start:
        start = _when(given_start, "start_date")
        end = _when(given_end, "end_date") if given_end else start + MAX_RANGE
    else:
        end = _when(given_end, "end_date") if given_end else now
        start = end - MAX_RANGE
    if end < start:
        raise Open311Error(400, "end_date is before start_date")
    if end - start > MAX_RANGE:
        raise Open311Error(400, "start_date to end_date may not span more than 90 days")
    statuses = _csv(params.get("status"))
    bad = [s for s in statuses if s not in STATUSES]
    if bad:
        raise Open311Error(400, f"status '{bad[0]}' is not open or closed")
    return RequestQuery(codes=_csv(params.get("service_code")), start=start, end=end,
                        statuses=statuses)
