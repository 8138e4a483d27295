"""``griddispatch report``: assessment of departments and grid workers by service, not counts.

``assess`` is the pure aggregation over case records (definitions and the score formula in
its docstring), ``simulated`` what a simulation's output can say, ``table`` and ``page`` the
terminal and HTML renderings, ``source`` the one Kafka read (the compacted ``cases`` topic).
"""

from engine.report.assess import Assessment, Row, Tally, assess
from engine.report.simulated import SimulatedSummary, summarize

__all__ = ["Assessment", "Row", "SimulatedSummary", "Tally", "assess", "summarize"]
