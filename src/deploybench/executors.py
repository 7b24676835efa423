"""Executors: where a sweep's block sets run. ``sweep.run_sweep`` knows only the
:class:`Executor` interface; :class:`LocalExecutor` runs each block set here, in this process
(``execute.run_block_set``), and :class:`DaskExecutor` sends each one to a benchmark host of a
Dask cluster (``fleet.py`` is the host side).

DESIGN
- The unit of work is one block set: one launch epoch of one group of compared scenarios,
  measured on one host. A host runs one block set at a time (Dask resource ``bench_host=1``
  and one thread per worker), so no two measurements share a host.
- Hosts form *classes* (``host.host_fingerprint``: identical CPU model, cores, memory, kernel,
  KVM, GPUs). A block set is sent to a class, never to one host: any host of the class may
  take it, and a block set whose host died is measured again on another host of the same
  class. Runs of different classes are never pooled.
- Records come back one by one, as they are measured, and the executor hands each one to
  the block set's ``on_record`` in the caller's thread (the sweep stores it there): the store
  stays with the client, hosts write nothing central.
- ``wait`` returns the block sets that ended: ``done``; ``lost`` (the host, or the task
  process on it, died: the round it was measuring is handed over as a record with status
  ``lost`` and the host's name, without a run key); or ``failed`` (the task could not run,
  with why).
"""
from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

from .execute import BlockSet, run_block_set
from .store import LOST_STATUS, RunRecord

if TYPE_CHECKING:
    from .fleet import HostCard
    from .platforms.ledger import Ledger

RecordSink = Callable[[RunRecord], None]
NoteSink = Callable[[str], None]


@dataclass(frozen=True)
class HostClass:
    """Identical hosts (one ``host_fingerprint``): a block set goes to any one of them."""

    fingerprint: str
    label: str  # for people: CPU model, cores, memory, kernel, KVM, GPUs
    hosts: tuple[str, ...]  # host (worker) names


@dataclass(frozen=True)
class BlockSetDone:
    """A block set that ended: ``done``, ``lost`` (its host died under it) or ``failed``."""

    ticket: int
    outcome: str
    host: str = ""
    detail: str = ""


class Executor(Protocol):
    """Where block sets run (see the module docstring)."""

    def host_classes(self) -> list[HostClass]:
        """The classes of hosts that take block sets now."""

    def capacity(self, host_class: str) -> int:
        """How many block sets to keep in flight for ``host_class`` (0: none of its hosts is
        left): one per live host, plus any the executor queues behind them on its own. A
        host still measures one block set at a time whatever this says."""

    def submit(self, block_set: BlockSet, host_class: str, on_record: RecordSink) -> int:
        """Send ``block_set`` to a host of ``host_class``; every record it makes goes to
        ``on_record`` (in the thread that calls ``wait``). Returns its ticket."""

    def wait(self, timeout_s: float | None = None) -> list[BlockSetDone]:
        """Deliver records as they come, until at least one block set ends (or
        ``timeout_s`` passes, or none is in flight); returns those that ended."""

    def close(self) -> None:
        """Stop whatever is still running (its finished runs are delivered first)."""


# -- this host ---------------------------------------------------------------------------------
def local_host_class() -> HostClass:
    from .host import host_class_label, run_metadata

    meta = run_metadata()
    return HostClass(meta["fingerprint"], host_class_label(meta), (str(meta["host"]),))


class LocalExecutor:
    """Today's sweep: each block set runs here, in this process, one after the other, when
    ``wait`` is called. ``execute`` is ``run_block_set`` (tests pass their own)."""

    def __init__(self, *, ledger: "Ledger | None" = None, runs_root: Path | None = None,
                 execute: Callable[..., Any] = run_block_set, host_class: HostClass | None = None) -> None:
        self.ledger = ledger
        self.runs_root = runs_root
        self.execute = execute
        self.host_class = host_class or local_host_class()
        self._queue: deque[tuple[int, BlockSet, RecordSink]] = deque()
        self._tickets = itertools.count(1)

    def host_classes(self) -> list[HostClass]:
        return [self.host_class]

    def capacity(self, host_class: str) -> int:
        return 1 if host_class == self.host_class.fingerprint else 0

    def submit(self, block_set: BlockSet, host_class: str, on_record: RecordSink) -> int:
        ticket = next(self._tickets)
        self._queue.append((ticket, block_set, on_record))
        return ticket

    def wait(self, timeout_s: float | None = None) -> list[BlockSetDone]:
        if not self._queue:
            return []
        ticket, block_set, on_record = self._queue.popleft()
        self.execute(block_set, on_record, ledger=self.ledger, runs_root=self.runs_root)
        return [BlockSetDone(ticket, "done", self.host_class.hosts[0])]

    def close(self) -> None:
        self._queue.clear()

    def __enter__(self) -> "LocalExecutor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# -- a Dask cluster ------------------------------------------------------------------------------
@dataclass
class _Ticket:
    ticket: int
    block_set: BlockSet
    host_class: str
    on_record: RecordSink
    future: Any = None
    attempt: str | None = None  # the task execution whose events count (the first that began)
    address: str | None = None
    host: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    #: what the host is measuring now: scenario key -> its start event
    in_flight: dict[str, dict[str, Any]] = field(default_factory=dict)
    records: int = 0
    summary: dict[str, Any] | None = None  # its "done" event: measured, the host is freeing up
    submitted_wall: float = 0.0


#: seconds between two looks at the cluster's membership (a host gone = its block set lost)
MEMBERSHIP_EVERY_S = 1.0
#: seconds between two looks at the queue of records and at the futures
POLL_S = 0.02
#: block sets queued behind each host's running one (see DaskExecutor.capacity)
QUEUED_PER_HOST = 1


class DaskExecutor:
    """Block sets on the benchmark hosts of a Dask cluster (``fleet worker`` processes).

    Each block set is one Dask task that needs ``bench_host=1`` on a host of its class
    (``workers=`` the usable hosts of that class, no other): it runs ``fleet.run_task``
    there, which runs the same code as a local sweep in a subprocess and puts every record
    on a Dask queue as it is made; ``wait`` takes them off and hands them over. Hosts whose
    deploybench version or git revision differs from this client's are refused, one line
    each (``on_note``). ``platform_factory`` (``module:callable``, called with the platform
    name and its options) builds the platforms on the hosts."""

    def __init__(self, client: Any, *, platform_factory: str | None = None,
                 on_note: NoteSink | None = None) -> None:
        import uuid

        from distributed import Queue

        from . import fleet

        self.client = client
        self.platform_factory = platform_factory or fleet.DEFAULT_PLATFORM_FACTORY
        self.on_note = on_note or (lambda line: None)
        self.sweep_id = uuid.uuid4().hex[:12]
        self.queue = Queue(f"deploybench-{self.sweep_id}", client=client)
        self.cards: dict[str, "HostCard"] = {}  # address -> usable host
        self.refused: dict[str, str] = {}  # address -> why
        self._unready: set[str] = set()  # workers that are no benchmark host (yet)
        #: what each finished task said: its host and where its time went (``marks``)
        self.summaries: list[dict[str, Any]] = []
        self._finishing: list[Any] = []  # futures of block sets done, their tasks returning
        self._tickets: dict[int, _Ticket] = {}
        self._numbers = itertools.count(1)
        self._looked = 0.0
        self._refresh()

    # -- hosts -----------------------------------------------------------------------------------
    def _refresh(self) -> list[str]:
        """Look at the cluster: describe new workers (refusing incompatible ones); returns
        the addresses that are gone."""
        from . import fleet

        self._looked = time.monotonic()
        present = set(fleet.worker_addresses(self.client))
        gone = [a for a in self.cards if a not in present]
        for address in gone:
            self.on_note(f"host {self.cards[address].name} ({address}) left the fleet")
            del self.cards[address]
        for address in [a for a in self.refused if a not in present]:
            del self.refused[address]
        new = [a for a in present if a not in self.cards and a not in self.refused]
        if new:
            for address, (card, problem) in fleet.describe_workers(self.client, new).items():
                if card is None and problem is None:  # not a benchmark host, or not yet: look again
                    if address not in self._unready:
                        self._unready.add(address)
                        self.on_note(fleet.NOT_A_BENCH_HOST.format(address=address))
                    continue
                if problem is None and card is not None:
                    problem = fleet.compatibility_problem(card)
                if problem is not None:
                    self.refused[address] = problem
                    self.on_note(f"refused {problem}")
                else:
                    self.cards[address] = card
        return gone

    def wait_for_hosts(self, timeout_s: float = 60.0, count: int = 1) -> None:
        """At the start: give workers that are still becoming benchmark hosts (a preload
        running doctor) up to ``timeout_s`` for ``count`` of them to be ready (a local fleet
        of N waits for its N; workers that are refused or never become hosts end the wait)."""
        deadline = time.monotonic() + timeout_s
        while len(self.cards) < count and self._unready and time.monotonic() < deadline:
            time.sleep(0.5)
            self._unready = {a for a in self._unready if a not in self.cards}
            self._refresh()

    def host_classes(self) -> list[HostClass]:
        by_class: dict[str, list["HostCard"]] = {}
        for card in self.cards.values():
            by_class.setdefault(card.fingerprint, []).append(card)
        return [HostClass(fp, cards[0].label, tuple(sorted(c.name for c in cards)))
                for fp, cards in sorted(by_class.items())]

    def hosts_of(self, host_class: str) -> list[str]:
        return sorted(a for a, c in self.cards.items() if c.fingerprint == host_class)

    def capacity(self, host_class: str) -> int:
        """Its live hosts, each with QUEUED_PER_HOST more block sets queued at the scheduler:
        a host that finishes one starts the next at once, instead of idling while the client
        hears of the end, plans the group and sends another (0.3-0.6 s a block set at 8
        workers, benchmarks/fleet_overhead.py). A queued block set is not begun: a host that
        dies leaves it to be run by another (Dask reschedules it), never lost."""
        return len(self.hosts_of(host_class)) * (1 + QUEUED_PER_HOST)

    # -- block sets ------------------------------------------------------------------------------
    def submit(self, block_set: BlockSet, host_class: str, on_record: RecordSink) -> int:
        from . import fleet

        number = next(self._numbers)
        spec = fleet.task_spec(block_set, platform_factory=self.platform_factory)
        ticket = _Ticket(number, block_set, host_class, on_record, submitted_wall=time.time())
        ticket.future = self.client.submit(
            fleet.run_task, spec.to_json(), self.queue.name, number, self.sweep_id,
            key=f"deploybench-blockset-{self.sweep_id}-{number}", pure=False, retries=0,
            resources={"bench_host": 1}, workers=self.hosts_of(host_class), allow_other_workers=False)
        self._tickets[number] = ticket
        return number

    def _drain(self) -> None:
        """Hand over every event waiting in the queue."""
        while True:
            try:
                events = self.queue.get(batch=True)
            except Exception:  # noqa: BLE001 - the scheduler went away: nothing more comes
                return
            if not events:
                return
            for item in events:
                for event in item if isinstance(item, (list, tuple)) else [item]:
                    self._event(event)


    def _event(self, event: dict[str, Any]) -> None:
        ticket = self._tickets.get(int(event.get("ticket", -1)))
        if ticket is None:
            return  # a block set already given up (lost, cancelled): its late events do not count
        kind = event.get("kind")
        if kind == "begun":
            if ticket.attempt is None:
                ticket.attempt = event["attempt"]
                ticket.address = event.get("address")
                ticket.host = event.get("host", "")
                ticket.metadata = event.get("metadata") or {}
                ticket.context = event.get("context") or {}
            return
        if event.get("attempt") != ticket.attempt:
            return  # a second execution of the same task (Dask rescheduled it): never counted
        if kind == "done":
            ticket.summary = event.get("summary") or {}
        elif kind == "start":
            ticket.in_flight[event["scenario"]] = event
        elif kind == "record":
            record = RunRecord.from_json(event["record"])
            ticket.in_flight.pop(record.scenario.key, None)
            ticket.records += 1
            ticket.on_record(record)

    def _lost(self, ticket: _Ticket, why: str) -> BlockSetDone:
        """Give up a block set whose host died: its rounds in flight become ``lost`` records."""
        del self._tickets[ticket.ticket]
        try:
            self.client.cancel(ticket.future, force=True)
        except Exception:  # noqa: BLE001 - the future may be gone with its scheduler
            pass
        by_key = {c.key: c for c in ticket.block_set.contenders}
        now = time.time()
        for key, start in ticket.in_flight.items():
            contender = by_key.get(key)
            if contender is None:
                continue
            what = "launch" if start.get("what") == "launch" else "round"
            host = dict(ticket.metadata)
            if ticket.context:
                host["fleet"] = ticket.context
            ticket.on_record(RunRecord(
                scenario=contender.scenario, status=LOST_STATUS, started_at=float(start.get("started", now)),
                finished_at=now, study=ticket.block_set.study, repetition=ticket.block_set.epoch,
                error=f"lost with host {ticket.host or '?'}: {why} during the {what}", host=host,
                block_id=start.get("block_id"), block_pos=start.get("position")))
        ticket.in_flight.clear()
        return BlockSetDone(ticket.ticket, "lost", ticket.host, why)

    def wait(self, timeout_s: float | None = None) -> list[BlockSetDone]:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self._tickets:
            self._finishing = [f for f in self._finishing if not f.done()]
            ended = [t for t in self._tickets.values() if t.future.done()]
            self._drain()  # after looking at the futures: a finished task put all its events first
            out: list[BlockSetDone] = []
            for ticket in ended:
                out.append(self._ended(ticket))
            for ticket in [t for t in self._tickets.values() if t.summary is not None]:
                # measured and done: its host frees up as soon as the task returns; keep the
                # future until then (releasing it would cancel the task)
                del self._tickets[ticket.ticket]
                self._finishing.append(ticket.future)
                self.summaries.append({**ticket.summary, "submitted_wall": ticket.submitted_wall,
                                       "seen_wall": time.time()})
                out.append(BlockSetDone(ticket.ticket, "done", ticket.host))
            if time.monotonic() - self._looked >= MEMBERSHIP_EVERY_S:
                gone = set(self._refresh())
                for ticket in [t for t in self._tickets.values() if t.address in gone]:
                    self._drain()
                    out.append(self._lost(ticket, f"host {ticket.host} ({ticket.address}) left the fleet"))
            if out:
                return out
            if deadline is not None and time.monotonic() >= deadline:
                return []
            # (a Queue.get that times out is an error in the scheduler's log: look, and sleep)
            time.sleep(POLL_S)
        return []

    def _ended(self, ticket: _Ticket) -> BlockSetDone:
        from . import fleet

        future = ticket.future
        if future.status == "finished":
            del self._tickets[ticket.ticket]
            summary = future.result() or {}
            self.summaries.append(summary)
            return BlockSetDone(ticket.ticket, "done", ticket.host or summary.get("host", ""),
                                summary.get("detail", ""))
        error = future.exception() if future.status == "error" else None
        why = fleet.task_failure_text(error) if error is not None else f"the task was {future.status}"
        if fleet.host_died(error) or ticket.in_flight or ticket.records:
            return self._lost(ticket, why)
        del self._tickets[ticket.ticket]
        return BlockSetDone(ticket.ticket, "failed", ticket.host, why)

    def close(self) -> None:
        """Cancel what is in flight, stop its task processes on the hosts (they close their
        sessions), and hand over the runs that finished before."""
        from . import fleet

        if not self._tickets:
            return
        futures = [t.future for t in self._tickets.values()]
        try:
            self.client.cancel(futures, force=True)
            self.client.run(fleet.abort_sweep, self.sweep_id, on_error="ignore")
        except Exception:  # noqa: BLE001 - a scheduler already gone
            pass
        deadline = time.monotonic() + fleet.ABORT_GRACE_S
        while time.monotonic() < deadline and not all(f.done() for f in futures):
            time.sleep(0.05)
        self._drain()
        self._tickets.clear()

    def __enter__(self) -> "DaskExecutor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
