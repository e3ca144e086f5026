"""The ledger's record types: what lowcarb writes down, one msgspec struct per table.

Placements (bind decisions), pod lifecycle (start and end of running), gate holds and accounted
usage. Each record names its table (``table``) and has an idempotent ``key`` (``uid:placement``,
``uid:start``...): the store keeps the first row of a key and ignores repeats, so replaying the
pod watch after a restart never duplicates a row. The columns of a table are the struct's fields
in order; :mod:`carbon.accounting.store` derives the schema from them. A new record type is one
struct here plus its entry in :data:`RECORD_TYPES`.
"""

from __future__ import annotations

from typing import ClassVar, Literal, TypeVar

import msgspec

DECISION_ANNOTATION = "lowcarb.dev/decision"


class LedgerError(Exception):
    """A ledger that is missing, corrupt, of another schema, or not a ledger at all."""


class LedgerUnavailable(LedgerError):
    """The ledger's database cannot be reached (connection refused or lost): no record of a
    batch can be written, so the writer fails them together instead of one by one."""


class PlacementRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One bind decision of the scheduler: where the pod went, with what data, and the alternative.

    ``counterfactual_kg`` is the carbon-unaware counterfactual: the *mean* of the expected
    emissions over all feasible candidate nodes (what a scheduler blind to carbon would emit on
    average), and ``counterfactual_g_per_kwh`` the mean expected intensity over those candidates.
    ``expected_kg`` is the expected emissions on the chosen node, from the same estimate.
    """

    table: ClassVar[str] = "placement"

    uid: str
    namespace: str
    name: str
    at: float  # epoch seconds of the decision
    node: str
    zone: str | None = None
    region: str | None = None  # node region label value (PUE by region)
    workload_class: str = "default"
    owner_kind: str | None = None
    owner_name: str | None = None
    gpu_model: str | None = None
    gpus: int = 0
    gpu_milli: int = 1000  # thousandths of each GPU used (openb convention; 1000 = whole GPUs)
    cpu_milli: int = 0
    memory_bytes: int = 0
    intensity_g_per_kwh: float | None = None
    intensity_source: str | None = None
    intensity_age_s: float | None = None
    scores: dict[str, float] = msgspec.field(default_factory=dict)
    score: int | None = None
    counterfactual_g_per_kwh: float | None = None
    counterfactual_kg: float | None = None
    expected_kg: float | None = None
    expected_duration_s: float | None = None
    candidates: int | None = None
    note: str | None = None

    @property
    def key(self) -> str:
        return f"{self.uid}:placement"

    @property
    def job(self) -> str:
        """The owning workload (Job, JobSet, training run...) as ``namespace/Kind/name``."""
        if self.owner_kind and self.owner_name:
            return f"{self.namespace}/{self.owner_kind}/{self.owner_name}"
        return f"{self.namespace}/Pod/{self.name}"

    def to_annotation(self) -> str:
        """Compact JSON for the ``lowcarb.dev/decision`` pod annotation written at bind."""
        return msgspec.json.encode(self).decode()

    @classmethod
    def from_annotation(cls, text: str) -> PlacementRecord:
        """Decode an annotation written by :meth:`to_annotation`; raises ``LedgerError``."""
        try:
            return msgspec.json.decode(text, type=cls)
        except msgspec.DecodeError as exc:
            raise LedgerError(f"annotation {DECISION_ANNOTATION}: {exc}") from exc


class LifecycleRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A pod started or stopped running (from the pod watch; container start/finish times)."""

    table: ClassVar[str] = "lifecycle"

    uid: str
    event: Literal["start", "end"]
    at: float
    note: str | None = None

    @property
    def key(self) -> str:
        return f"{self.uid}:{self.event}"


class GateRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A temporal-shift hold: when it was held, planned and actual release, intensity now vs then.

    ``intensity_now_g_per_kwh`` is the expected mean intensity over the run had the pod started
    when it was first held; ``intensity_release_g_per_kwh`` the same when it was released.
    """

    table: ClassVar[str] = "gate"

    uid: str
    namespace: str
    name: str
    held_at: float
    planned_release: float
    actual_release: float | None = None
    intensity_now_g_per_kwh: float | None = None
    intensity_release_g_per_kwh: float | None = None
    zone: str | None = None
    reason: str | None = None

    @property
    def key(self) -> str:
        return f"{self.uid}:gate"


class UsageRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What one pod consumed and emitted over its actual runtime (written by ``accounting``).

    Inventory columns (``energy_kwh``, ``co2e_location_kg``, ``co2e_market_kg``, ``embodied_kg``)
    are kept apart from the scheduling effect (``counterfactual_kg``, ``avoided_kg``).
    """

    table: ClassVar[str] = "usage"

    uid: str
    namespace: str
    name: str
    workload_class: str
    job: str
    node: str
    zone: str | None
    gpu_model: str | None
    start: float
    end: float
    day: str  # UTC date of ``start``: a run is attributed to the day it started
    gpu_hours: float
    energy_kwh: float
    co2e_location_kg: float
    co2e_market_kg: float
    market_basis: Literal["contract", "residual", "location"]
    embodied_kg: float
    counterfactual_kg: float
    avoided_kg: float
    estimated_kg: float  # part of co2e_location_kg resting on estimated or missing intensity
    method: str  # energy method: model | kepler | dcgm+model
    accounted_at: float
    note: str | None = None

    @property
    def key(self) -> str:
        return f"{self.uid}:usage"


class IntentRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A bind lowcarb is about to attempt (``bind``, committed before the Binding is sent), or
    the settlement of one whose pod it did not bind with a decision (``settled``).

    After a crash every pod lowcarb may have bound has a ``bind`` intent; ``open_intents`` (in
    :mod:`carbon.accounting.ledger`) lists those with neither a placement row nor a ``settled``
    row, for the scheduler to settle against the API server. Schema-additive: ledgers written
    before intents existed get the table when a writer opens them, and readers do not require it.
    """

    table: ClassVar[str] = "intent"

    uid: str
    namespace: str
    name: str
    node: str
    at: float
    event: Literal["bind", "settled"] = "bind"
    note: str | None = None

    @property
    def key(self) -> str:
        return f"{self.uid}:{self.event}"


Record = PlacementRecord | LifecycleRecord | GateRecord | UsageRecord | IntentRecord
RECORD_TYPES: tuple[type[Record], ...] = (
    PlacementRecord,
    LifecycleRecord,
    GateRecord,
    UsageRecord,
    IntentRecord,
)
#: Tables a ledger may lack (added after schema version 1 shipped; created by the writer).
OPTIONAL_TABLES = frozenset({IntentRecord.table})


R = TypeVar("R", PlacementRecord, LifecycleRecord, GateRecord, UsageRecord, IntentRecord)
