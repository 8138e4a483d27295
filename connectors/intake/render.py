"""Open311 documents as JSON or XML, per GeoReport v2.

XML is the spec's required format: UTF-8 with the XML declaration, one root element per
document (``services``, ``service_definition``, ``service_requests``, ``errors``,
``discovery``), list items named in the singular (``service``, ``attribute``, ``value``,
``request``, ``error``, ``endpoint``, ``format``), booleans ``true``/``false``, missing values
as empty elements. JSON carries the same documents with ``null`` for missing values.
"""

from __future__ import annotations

import json
import re
from typing import Any
from xml.etree import ElementTree

FORMATS = {"json": "application/json; charset=utf-8", "xml": "text/xml; charset=utf-8"}
ROOTS = {"services": "service", "service_requests": "request", "errors": "error"}
ITEMS = {"attributes": "attribute", "values": "value", "endpoints": "endpoint",
         "formats": "format", **ROOTS}


# What XML 1.0 cannot carry at all, not even escaped: C0 controls but tab, newline and
# carriage return; lone surrogates; U+FFFE and U+FFFF. Residents' texts arrive with them
# (pasted from other apps), and one would make the whole document unreadable.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return _NOT_XML.sub("", str(value))


def _fill(element: ElementTree.Element, value: Any, name: str) -> None:
    if isinstance(value, dict):
        for key, child in value.items():
            _fill(ElementTree.SubElement(element, key), child, key)
    elif isinstance(value, list):
        item = ITEMS.get(name, "item")
        for child in value:
            _fill(ElementTree.SubElement(element, item), child, item)
    else:
        element.text = _text(value)


def to_xml(root: str, document: Any) -> bytes:
    """``root`` names the document: a list becomes ``<root><item/>...</root>``."""
    element = ElementTree.Element(root)
    _fill(element, document, root)
    body = ElementTree.tostring(element, encoding="unicode")
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + body.encode("utf-8")


def json_document(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def render(fmt: str, root: str, document: Any) -> tuple[bytes, str]:
    """(body, content type) of a document in ``json`` or ``xml``."""
    if fmt == "xml":
        return to_xml(root, document), FORMATS["xml"]
    return json_document(document), FORMATS["json"]


def errors(code: int, description: str) -> list[dict[str, Any]]:
    return [{"code": code, "description": description}]
