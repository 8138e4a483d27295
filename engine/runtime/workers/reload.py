"""Hot reload of the rule set: validate first, swap atomically, keep serving on failure.

The design (docs/design.md "Rules and classification") asks that operators can edit ``rules/``
under a running worker: a new, valid rule set takes over for new incidents; a broken edit is
logged, shown in metrics and otherwise ignored, because stopping dispatch for a typo would be
worse than dispatching with the rules of a minute ago. Every record carries ``rules_revision``,
so nobody has to guess which set decided it.

The holder knows nothing about Kafka or Faust, so it is tested with a fake loader. It is
called from a worker thread (the load takes a fraction of a second, or a minute when changed
examples retrain the classifier, and must not block the event loop) while the stream reads
``holder.current`` from the loop thread: the swap is one
attribute assignment, which Python makes atomic, so a reader sees the old or the new set and
never half of each. A lock keeps a timer tick and a SIGHUP from loading at the same time.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from engine.calendar import holiday_data_until_timestamp, provisional_now
from engine.rules import RuleSet
from engine.rules.load import NOT_DECIDING, load_rules
from engine.runtime import metrics
from engine.yamlfile import FileProblems

log = logging.getLogger("griddispatch.rules")

Loader = Callable[[Path], RuleSet]


def fingerprint(rules_dir: Path) -> str:
    """A cheap digest of (path, mtime_ns, size) of every rule file, for polling.

    It reads no file contents, so a timer can call it every few seconds; a change only means
    "worth loading": the revision (a content hash) decides whether the rules really changed.
    ``tests/`` and ``eval/`` are left out, as they are from the revision: they check
    decisions and never change one.
    A file that vanishes while we look (an editor's save-by-rename) is skipped; the next poll
    sees the final state.
    """
    digest = hashlib.sha256()
    try:
        paths = sorted(rules_dir.rglob("*"))
    except OSError:
        return "unreadable"
    for path in paths:
        if NOT_DECIDING & set(path.relative_to(rules_dir).parts):
            continue
        try:
            stat = path.stat()
        except OSError:
            continue
        if not path.is_file():
            continue
        digest.update(f"{path.relative_to(rules_dir)}\0{stat.st_mtime_ns}\0{stat.st_size}\n"
                      .encode())
    return digest.hexdigest()


class RulesHolder:
    """The serving rule set and the logic that replaces it.

    The first load happens in the constructor and raises ``FileProblems``: a worker must not
    start without valid rules. Later loads never raise.
    """

    def __init__(self, rules_dir: Path, loader: Loader = load_rules) -> None:
        self.rules_dir = rules_dir
        self._loader = loader
        self._lock = threading.Lock()
        self._fingerprint = fingerprint(rules_dir)
        self.current: RuleSet = loader(rules_dir)
        metrics.RULES_RELOAD_SUCCESS.set(1)
        metrics.RULES_REVISION.labels(revision=self.current.revision).set(1)
        metrics.RULES_LAST_RELOAD.set(time.time())
        log.info("serving rules revision %s from %s", self.current.revision, rules_dir)

    def maybe_reload(self) -> bool:
        """Load the rules if the files changed since the last attempt; True if swapped."""
        return self._reload(force=False)

    def request_reload(self) -> bool:
        """Load the rules even if no file seems changed (SIGHUP); True if swapped."""
        return self._reload(force=True)

    def _reload(self, force: bool) -> bool:
        with self._lock:
            seen = fingerprint(self.rules_dir)
            if seen == self._fingerprint and not force:
                return False
            # Remember what we tried even if it fails, so a broken edit is reported once,
            # not on every poll; the next edit (or a SIGHUP) tries again.
            self._fingerprint = seen
            try:
                candidate = self._loader(self.rules_dir)
            except FileProblems as exc:
                for problem in exc.problems:
                    log.error("rules reload failed: %s", problem)
                self._failed(f"{len(exc.problems)} problem(s)")
                return False
            except Exception as exc:  # a loader bug must not take the worker down either
                log.exception("rules reload failed unexpectedly: %r", exc)
                self._failed("unexpected error")
                return False
            old = self.current
            self.current = candidate  # the atomic swap: one reference assignment
            metrics.RULES_RELOAD_SUCCESS.set(1)
            metrics.RULES_RELOAD.labels(outcome="success").inc()
            metrics.RULES_LAST_RELOAD.set(time.time())
            metrics.RULES_REVISION.labels(revision=candidate.revision).set(1)
            if old.revision != candidate.revision:
                with contextlib.suppress(KeyError):
                    metrics.RULES_REVISION.remove(old.revision)
                log.info("rules reloaded: revision %s → %s", old.revision, candidate.revision)
            else:
                log.info("rules reloaded: revision %s unchanged", candidate.revision)
            return True

    def _failed(self, what: str) -> None:
        metrics.RULES_RELOAD_SUCCESS.set(0)
        metrics.RULES_RELOAD.labels(outcome="failure").inc()
        log.error("still serving rules revision %s (%s in %s)", self.current.revision, what,
                  self.rules_dir)


def export_calendar(holder: RulesHolder) -> None:
    """Route and timers count working time: say until when the serving rule set's holiday
    data holds (an alert watches it; read at each scrape, so a reload that enters a year
    shows at once)."""
    metrics.CALENDAR_COVERED_UNTIL.set_function(
        lambda: holiday_data_until_timestamp(holder.current.holidays))
    metrics.CALENDAR_PROVISIONAL.set_function(lambda: provisional_now(holder.current.holidays))


def export_departments(holder: RulesHolder) -> None:
    """Name each department of the serving rules for alerts (``griddispatch_department_info``):
    a summary that joins on it says 良渚街道综合行政执法队, not 330110010.zhzf."""
    metrics.DEPARTMENT_INFO.clear()
    for department in holder.current.departments.by_code.values():
        metrics.DEPARTMENT_INFO.labels(department.code, department.name).set(1)
