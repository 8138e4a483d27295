"""A reporter's personal data: who may see it, and its masked form for everyone else.

Residents give their name and phone so that someone can call them back, not so that every
department, log file and public page holds them (个人信息保护法: the minimum necessary). The
rule, applied to assignments, the console and the public Open311 view alike:

* command centres (role ``zhzx``) see them: they verify with the reporter (回访);
* a case's lead department sees them when its matter needs the reporter contacted
  (``contact_reporter`` in matters.yaml: a dispute to mediate, a consumer complaint, a
  person needing help); otherwise it goes to the place, and sees the masked form;
* everyone else (assisting departments, viewers, the public) sees the masked form.

Free text is masked too where it leaves the engine for someone without the grant: residents
write their phone into descriptions ("请回电 138…"), and logs must never keep one.
"""

from __future__ import annotations

import re

from engine.contracts import Reporter

CENTRE_ROLE = "zhzx"

# Bounded by anything but a letter or digit (Chinese text around a number is common), so
# that a number inside a hex id or a longer code is not taken for a phone.
_EDGE_BEFORE, _EDGE_AFTER = r"(?<![0-9A-Za-z])", r"(?![0-9A-Za-z])"
_MOBILE = re.compile(_EDGE_BEFORE + r"(1[3-9]\d)[ -]?(\d{4})[ -]?(\d{4})" + _EDGE_AFTER)
_LANDLINE = re.compile(_EDGE_BEFORE + r"(0\d{2,3}[- ]?)(\d{3,4})(\d{4})" + _EDGE_AFTER)
_ID_CARD = re.compile(_EDGE_BEFORE + r"(\d{6})\d{8}(\d{3}[\dXx])" + _EDGE_AFTER)


def mask_text(text: str) -> str:
    """Mobile and landline numbers and resident ID numbers in free text, masked."""
    text = _ID_CARD.sub(lambda m: m.group(1) + "*" * 8 + m.group(2), text)
    text = _MOBILE.sub(lambda m: m.group(1) + "****" + m.group(3), text)
    return _LANDLINE.sub(lambda m: m.group(1) + "*" * len(m.group(2)) + m.group(3), text)


def mask_phone(phone: str) -> str:
    """138****5678: the carrier prefix and the last four digits, which a reporter recognises."""
    digits = phone.strip()
    if len(digits) <= 7:
        return "****"
    return digits[:3] + "*" * (len(digits) - 7) + digits[-4:]


def mask_name(name: str) -> str:
    """王** / 欧***: the first character (a surname, usually) and one star per other."""
    name = name.strip()
    return name[:1] + "*" * (len(name) - 1) if len(name) > 1 else "*"


def masked(reporter: Reporter | None) -> Reporter | None:
    if reporter is None:
        return None
    return Reporter(name=mask_name(reporter.name) if reporter.name else None,
                    phone=mask_phone(reporter.phone) if reporter.phone else None)


def sees_reporter(department_role: str, case_role: str | None,
                  contact_reporter: bool) -> bool:
    """Whether a recipient gets the reporter's name and phone as given (see the module)."""
    return department_role == CENTRE_ROLE or (case_role == "lead" and contact_reporter)


def reporter_for(reporter: Reporter | None, department_role: str,
                 case_role: str | None,
                 contact_reporter: bool) -> Reporter | None:
    return reporter if sees_reporter(department_role, case_role, contact_reporter) \
        else masked(reporter)


def department_role(code: str) -> str:
    """A department code's role: ``330110005.zhzf`` → ``zhzf``."""
    return code.rsplit(".", 1)[-1]
