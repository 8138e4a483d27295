"""What every long-running command (workers, bridges) shares.

Timestamped log lines on standard error, a ``--metrics-port`` option that reads the same
everywhere, and a taken port reported as one clear line with the option to change, not as
a traceback: on-call staff start these by hand when something is already wrong.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from typing import Any

from engine import privacy

LOG_FORMAT = "[%(asctime)s] [%(levelname)s] %(message)s"


def start_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format=LOG_FORMAT)
    redact_logs()


def redact_logs() -> None:
    """Mask phone and ID numbers in every log record, whatever handler writes it (Faust
    installs its own): a record's message and traceback are formatted and masked when the
    record is made, so no reporter's number reaches a log file (``engine.privacy``)."""
    make = logging.getLogRecordFactory()
    if getattr(make, "redacts", False):
        return

    def redacted(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a bad format string: leave it to the handler
            return record
        # An empty tuple, not None: Faust's formatter wraps a non-tuple into (None,).
        record.msg, record.args = privacy.mask_text(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = privacy.mask_text(
                logging.Formatter().formatException(record.exc_info))
        return record

    redacted.redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(redacted)


def add_metrics_port(parser: argparse.ArgumentParser, default: int) -> None:
    parser.add_argument("--metrics-port", type=int, default=default,
                        help=f"port of /metrics on 127.0.0.1 (default: {default}; 0 turns it "
                             "off)")


def port_taken(port: int, exc: OSError) -> int:
    print(f"error: cannot serve metrics on 127.0.0.1:{port} ({exc.strerror}); choose another "
          "--metrics-port", file=sys.stderr)
    return 1


def run_logged(run: Callable[[], int], metrics_port: int) -> int:
    """Run a worker's main loop with logging on; a taken metrics port exits 1 with a reason."""
    start_logging()
    try:
        return run()
    except OSError as exc:
        return port_taken(metrics_port, exc)
