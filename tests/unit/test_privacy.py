"""The reporter's personal data: masks, and who may see it as given (engine/privacy.py)."""

from __future__ import annotations

import logging

import pytest

from engine import privacy
from engine.cli.long_running import redact_logs
from engine.contracts import Reporter


@pytest.mark.parametrize(("phone", "masked"), [
    ("13812345678", "138****5678"), ("057188888888", "057*****8888"),
    ("12345678", "123*5678"), ("1234567", "****"), ("110", "****")])
def test_mask_phone(phone: str, masked: str) -> None:
    assert privacy.mask_phone(phone) == masked


@pytest.mark.parametrize(("name", "masked"), [
    ("王女士", "王**"), ("李", "*"), ("欧阳娜娜", "欧***"), (" 张三 ", "张*")])
def test_mask_name(name: str, masked: str) -> None:
    assert privacy.mask_name(name) == masked


def test_masked_reporter_keeps_what_is_missing_missing() -> None:
    assert privacy.masked(None) is None
    assert privacy.masked(Reporter(name="匿名")) == Reporter(name="匿*")
    assert privacy.masked(Reporter(phone="13812345678")) == Reporter(phone="138****5678")


@pytest.mark.parametrize(("text", "masked"), [
    ("请回电13812345678谢谢", "请回电138****5678谢谢"),
    ("电话 138-1234-5678", "电话 138****5678"),
    ("座机0571-89201395", "座机0571-****1395"),
    ("身份证330106199001011234", "身份证330106********1234"),
    ("身份证33010619900101123X号", "身份证330106********123X号"),
    # not phones: codes, ids, times, money
    ("网格330110005001001", "网格330110005001001"),
    ("inc-13812345678ab", "inc-13812345678ab"),
    ("SMOKE-330110012-0042-1732431600", "SMOKE-330110012-0042-1732431600"),
    ("2026-11-24 09:30", "2026-11-24 09:30"), ("罚款20000元", "罚款20000元")])
def test_mask_text(text: str, masked: str) -> None:
    assert privacy.mask_text(text) == masked


@pytest.mark.parametrize(("dept_role", "case_role", "contact", "sees"), [
    ("zhzx", None, False, True),        # a command centre, always
    ("zhzx", "assist", False, True),
    ("zhzf", "lead", True, True),       # the lead of a matter needing the reporter
    ("zhzf", "lead", False, False),     # the lead of one that does not: it goes to the place
    ("scjg", "assist", True, False),    # assisting departments, never
    ("zhzf", None, True, False)])       # not on the case (a viewer)
def test_who_sees_the_reporter(dept_role: str, case_role: str | None, contact: bool,
                               sees: bool) -> None:
    assert privacy.sees_reporter(dept_role, case_role, contact) is sees


def test_log_records_never_keep_a_phone_number(caplog: pytest.LogCaptureFixture) -> None:
    redact_logs()
    redact_logs()  # idempotent: one wrapper, not two
    log = logging.getLogger("griddispatch.test")
    with caplog.at_level(logging.INFO):
        log.info("rejected %s: %s", "GA-1", "phone 13812345678 is not valid")
        try:
            raise ValueError("input_value='13987654321'")
        except ValueError:
            log.exception("failed on %s", "0571-89201395")
    text = caplog.text
    assert "13812345678" not in text and "138****5678" in text
    assert "13987654321" not in text and "139****4321" in text
    assert "89201395" not in text
