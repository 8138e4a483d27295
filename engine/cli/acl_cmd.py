"""``griddispatch acl diff|apply|password``: the broker's ACLs from the department registry,
and the principals' credentials (``engine.topics.acls``, ``engine.runtime.acl_admin``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.cli.options import Commands, add_rules_dir, command, group
from engine.runtime import acl_admin, kafka
from engine.runtime.settings import Settings
from engine.topics.acls import ENGINE


def register(commands: Commands) -> None:
    verbs = group(commands, "acl", dest="verb")
    for name, handler in (("acl diff", acl_diff), ("acl apply", acl_apply)):
        add_rules_dir(command(verbs, name, handler))
    password = command(verbs, "acl password", acl_password)
    who = password.add_mutually_exclusive_group(required=True)
    who.add_argument("principal", nargs="?",
                     help="a department code (330110005.zhzf) or an engine principal "
                          f"({', '.join(sorted(ENGINE))})")
    who.add_argument("--departments", type=Path, metavar="FILE",
                     help="new passwords for every department of the registry, written to "
                          "FILE (mode 0600) for 'console --department-credentials'")
    password.add_argument("--stdin", action="store_true",
                          help="read the password from standard input instead of generating "
                               "one")
    add_rules_dir(password)


def acl_diff(args: argparse.Namespace, settings: Settings) -> int:
    create, delete = acl_admin.plan(settings.with_(rules_dir=args.rules_dir))
    for acl in create:
        print(f"+ {acl}")
    for acl in delete:
        print(f"- {acl}")
    if not (create or delete):
        print("no changes: the broker's ACLs match the department registry")
    return 1 if create or delete else 0


def acl_apply(args: argparse.Namespace, settings: Settings) -> int:
    create, delete = acl_admin.apply_plan(settings.with_(rules_dir=args.rules_dir))
    print(f"{len(create)} ACL(s) created, {len(delete)} deleted" if create or delete
          else "no changes: the broker's ACLs match the department registry")
    return 0


def acl_password(args: argparse.Namespace, settings: Settings) -> int:
    from engine.reference.departments import DepartmentRegistry

    settings = settings.with_(rules_dir=args.rules_dir)
    registry = DepartmentRegistry.load(settings.rules_dir / "reference" / "departments.yaml")
    if args.departments is not None:
        from engine.runtime import department_credentials

        passwords = acl_admin.set_passwords(kafka.admin_client(settings),
                                            [d.code for d in registry])
        department_credentials.save(args.departments, passwords)
        print(f"credentials of {len(passwords)} departments stored (SCRAM-SHA-512); their "
              f"passwords are in {args.departments}", file=sys.stderr)
        return 0
    if args.principal not in ENGINE and args.principal not in registry:
        print(f"error: {args.principal} is neither a department in departments.yaml nor an "
              f"engine principal ({', '.join(sorted(ENGINE))})", file=sys.stderr)
        return 1
    given = sys.stdin.readline().rstrip("\n") if args.stdin else None
    if args.stdin and not given:
        print("error: no password on standard input", file=sys.stderr)
        return 1
    password = acl_admin.set_password(kafka.admin_client(settings), args.principal, given)
    if given is None:
        print(password)  # shown once: the broker keeps only a salted hash
    print(f"credentials of {args.principal} stored (SCRAM-SHA-512)", file=sys.stderr)
    return 0
