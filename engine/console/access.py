"""Who may see and do what in the console, by role and scope.

Roles follow how Zhejiang's centres work: the county's 社会治理中心 sees and sorts
everything in the county; a township's 综合信息指挥室 only its township; a department only
the cases it leads or assists; a viewer (a leader's screen, an auditor) reads everything
with reporters' phones masked and changes nothing. A centre acts as its own department
code (``<county or township>.zhzx``), so the route worker's rules for command centres
(verify, supervise, redispatch) apply to console users unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from engine import privacy
from engine.cases.events import VERIFIER_ROLE
from engine.cases.records import CaseRecord
from engine.contracts import Reporter, Triage

Role = Literal["county", "township", "department", "viewer"]
ROLES: tuple[Role, ...] = ("county", "township", "department", "viewer")
ROLE_NAMES: dict[Role, str] = {"county": "县级社会治理中心", "township": "乡镇综合信息指挥室",
                               "department": "职能部门", "viewer": "只读"}


@dataclass(frozen=True)
class Operator:
    username: str
    name: str
    role: Role
    scope: str | None  # county: 6 digits or None; township: 9 digits; department: its code

    @property
    def is_centre(self) -> bool:
        return self.role in ("county", "township")

    def _in_scope(self, chain: list[str]) -> bool:
        if self.scope is None:
            return True
        return any(code.startswith(self.scope) for code in chain)

    def sees_case(self, case: CaseRecord) -> bool:
        if self.role == "department":
            return case.lead == self.scope or self.scope in case.assist
        return self._in_scope(case.division_chain)

    def sees_triage(self, triage: Triage) -> bool:
        """Unplaced reports have no township yet: only a county centre (or a viewer) whose
        scope covers them can see them."""
        if self.role == "department":
            return False
        if triage.division_chain:
            return self._in_scope(triage.division_chain)
        if self.role == "township":
            return False
        named = triage.report.division_code
        return self.scope is None or (named is not None and named.startswith(self.scope))

    def sorts_triage(self, triage: Triage) -> bool:
        return self.is_centre and self.sees_triage(triage)

    def centre_code(self, chain: list[str]) -> str | None:
        """The command-centre department this user acts as for a place: the township's
        room for a township user, the county's centre for a county user."""
        if self.role == "township" and self.scope:
            return f"{self.scope}.{VERIFIER_ROLE}"
        if self.role == "county":
            county = self.scope or (chain[2][:6] if len(chain) > 2 else None)
            return f"{county}.{VERIFIER_ROLE}" if county else None
        return None

    def answers_for(self, case: CaseRecord) -> str | None:
        """The department a department user answers as on this case, if it is involved."""
        if self.role == "department" and self.sees_case(case):
            return self.scope
        return None

    def reporter(self, reporter: Reporter | None, case: CaseRecord | None,
                 contact_reporter: bool = False) -> Reporter | None:
        """The rule of ``engine.privacy``: centres see the reporter; a case's lead when its
        matter needs the reporter contacted; everyone else (assisting departments,
        viewers) the masked form."""
        if self.is_centre:
            return reporter
        lead = case is not None and self.role == "department" and case.lead == self.scope
        return privacy.reporter_for(reporter, "", "lead" if lead else None, contact_reporter)
