"""Publishes, their per-provider counters and their delivery records.

One repository per job, each in its own module, combined into :class:`PublishStore`:

- ``admission.py``: the publish row and its plan job, group-committed (a small publish is
  planned in that commit, through ``planning.py``);
- ``planning.py``: what planning writes (records, counters, its end), for the planner and
  admission alike;
- ``reads.py``: publishes and delivery records for the API;
- ``outcomes.py``: delivery records and counters, written by planning and dispatch;
- ``lifecycle.py``: started, planning done, closed, failed, cancelled (extends ``reads``:
  a cancel answers with the publish);
- ``deadletters.py``: dead letters listed and replayed;
- ``receipts.py``: receipts (delivered, opened, …) on delivery records and their counters.

Why one class made of them rather than separate objects: they share one database and one set of
tables, the API and the engine hold one ``PublishStore``, and a transaction often spans
several of them (a planning page inserts records, moves counters and checks the status under
one lock), so they are handed the same ``conn``. The repositories do not call each other's
methods; what two of them share (``bump``, ``close_open_deliveries``) is a module function.
"""

from __future__ import annotations

from pushgate.domain.accounting import DeliveryUpdate
from pushgate.domain.status import CLOSED, COUNTERS, FINAL
from pushgate.store.publishes.admission import Admission, InlinePlan
from pushgate.store.publishes.deadletters import DeadLetters
from pushgate.store.publishes.lifecycle import Lifecycle
from pushgate.store.publishes.model import DeadLetter, Publish
from pushgate.store.publishes.outcomes import RECORDED, Outcomes
from pushgate.store.publishes.receipts import Receipt, ReceiptResult, Receipts, Recorded

__all__ = [
    "CLOSED",
    "COUNTERS",
    "FINAL",
    "RECORDED",
    "DeadLetter",
    "DeliveryUpdate",
    "InlinePlan",
    "Publish",
    "PublishStore",
    "Receipt",
    "ReceiptResult",
    "Recorded",
]


class PublishStore(Admission, Lifecycle, Outcomes, DeadLetters, Receipts):
    """Every publish repository on one database (see the module docstring)."""
