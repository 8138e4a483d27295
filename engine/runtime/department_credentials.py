"""The departments' broker passwords, for the processes that act for departments.

The broker keeps only a salted hash of each SCRAM password. A process that sends answers on a
department's behalf (the console, for a department's signed-in officer; the demo's simulated
departments) needs the passwords themselves, so that the broker sees, authorises and can
audit each answer as the department's own principal (``engine/topics/acls.py``), not as the
console's. One YAML file, mode 0600, written by ``griddispatch acl password --departments
FILE`` (``up --secure`` writes one beside the stack), read by ``console
--department-credentials FILE``::

    departments:
      330110005.zhzf: <password>
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import yaml

from engine.reference.departments import DEPARTMENT_CODE
from engine.runtime.private_file import write_private
from engine.runtime.settings import Settings, scram_security
from engine.yamlfile import FileProblem, FileProblems, load_yaml

CREDENTIALS_ENV = "GRIDDISPATCH_DEPARTMENT_CREDENTIALS"
_CODE = re.compile(DEPARTMENT_CODE)


def save(path: Path, passwords: Mapping[str, str]) -> None:
    text = yaml.safe_dump({"departments": dict(sorted(passwords.items()))}, allow_unicode=True)
    write_private(path, ("# department principals' SCRAM passwords: keep private (0600)\n"
                         + text).encode("utf-8"))


def load(path: Path) -> dict[str, str]:
    """The passwords by department code; FileProblems naming the line of each bad entry."""
    doc = load_yaml(path)
    data = doc.data
    if not isinstance(data, dict) or set(data) != {"departments"} or not isinstance(
            data["departments"], dict):
        raise FileProblems([FileProblem(str(path), 1, "expected one key, 'departments', "
                                                      "mapping department codes to passwords")])
    problems: list[FileProblem] = []
    out: dict[str, str] = {}
    for code, password in data["departments"].items():
        at = doc.line_of(("departments", code))
        if not isinstance(code, str) or not _CODE.match(code):
            problems.append(FileProblem(str(path), at, f"'{code}' is not a department code"))
        elif not isinstance(password, str) or not password:
            problems.append(FileProblem(str(path), at, f"the password of {code} must be text"))
        else:
            out[code] = password
    if problems:
        raise FileProblems(problems)
    return out


def credentials_path(option: Path | None, env: Mapping[str, str] | None = None) -> Path | None:
    """``--department-credentials``, else ``$GRIDDISPATCH_DEPARTMENT_CREDENTIALS``, else none."""
    if option is not None:
        return option
    value = (os.environ if env is None else env).get(CREDENTIALS_ENV)
    return Path(value) if value else None


def as_department(settings: Settings, department: str,
                  passwords: Mapping[str, str]) -> Settings | None:
    """``settings`` as ``department``'s own principal when the broker authenticates
    (``settings`` carry SASL); unchanged when it does not; None when it does and the file has
    no password for the department (acting for it as anyone else would be a lie to the
    broker's audit)."""
    if not any(key.startswith("sasl.") for key, _ in settings.kafka_extra):
        return settings
    password = passwords.get(department)
    if password is None:
        return None
    others = tuple((k, v) for k, v in settings.kafka_extra
                   if not k.startswith("sasl.") and k != "security.protocol")
    return settings.with_(kafka_extra=others + scram_security(department, password))
