"""What the auctioneer calls: the contexts that wait, awards, and giving them back.

Only what may start now is offered (`otto.psm.rules.claimable`: a Linear batch's next
unfinished context, every Pending one of the other modes). An award assigns a Pending
context of a live batch to an orchestrator; once a batch's offered contexts are all
awarded, the rules (`otto.psm.rules.award`) move the batch on to Provisioning in the
same commit. An award is made once: the rules refuse a context already awarded, and the
update that records it is guarded (`queries.assign`: only a Pending, unawarded context of
that attempt), so replicas auctioning the same batch at once make one award between them
(their writes are serialised by the sequence counter's row lock); the other gets Conflict.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import groupby
from typing import Any

from otto.psm import rules
from otto.psm.ledger import apply
from otto.psm.states import BATCH_AWARDED, BATCH_LIVE
from otto.psm.store import queries
from otto.psm.store.base import Row, Store, Tx


class Awards:
    """The PSM's calls for the auctioneer (a part of `PipelineStateMachine`)."""

    store: Store

    def open_contexts(self) -> list[dict[str, Any]]:
        """Contexts of live batches that wait for an orchestrator and may start now."""
        rows = self.store.read(lambda tx: queries.open_batches(tx, BATCH_LIVE))
        found = []
        for _, batch_rows in groupby(rows, key=lambda r: (r["pipeline"], r["batch"])):
            batch = list(batch_rows)
            offered = {c.uuid for c in rules.claimable(_batch_state(batch))}
            found += [_open(r) for r in batch if r["uuid"] in offered and not r["orchestrator"]]
        return found

    def award(self, context: str, orchestrator: str, actor: str = "auctioneer") -> None:
        """Hand a context to an orchestrator; when all of a batch are handed out, provision."""
        self.store.write(_award(context, orchestrator, actor))

    def award_each(
        self, awards: list[tuple[str, str]], actor: str = "auctioneer"
    ) -> list[Exception | bool]:
        """`award` for each (context, orchestrator), in one commit: what each one raised, or
        whether its orchestrator may claim it at once (False: its batch's auction is still
        open, for contexts nobody has bid for yet; it may once the batch is provisioned)."""
        works = [_award(context, orchestrator, actor) for context, orchestrator in awards]
        return self.store.write_each(works)

    def release(self, context: str, orchestrator: str) -> None:
        """An awarded orchestrator that cannot start gives the context back."""
        self.store.write(lambda tx: queries.unassign(tx, context, orchestrator))

    def release_unclaimed(self, orchestrator: str) -> int:
        """Give back every award to `orchestrator` not yet claimed: it is gone (or, the
        server's own, it restarted and no longer knows of them); how many.

        Awards live on in orchestrators' memory only until a context is claimed; such
        contexts must be auctioned anew, or they would wait for an orchestrator that no
        longer knows of them.
        """
        return self.store.write(lambda tx: queries.unassign_unclaimed(tx, orchestrator))

    def unclaimed_awards(
        self, orchestrator: str | None = None, pipeline: str | None = None, claimable: bool = False
    ) -> list[dict[str, Any]]:
        """Contexts awarded and not claimed yet (`uuid`, `pipeline`, `name`,
        `orchestrator`), of one orchestrator or of all, of one pipeline or of all;
        `claimable`: only those that may be claimed now (their batch's auction ended).
        What a replica tells an orchestrator connected to it, whichever replica made them."""
        rows = self.store.read(
            lambda tx: queries.unclaimed_awards(tx, orchestrator, pipeline, claimable)
        )
        return [dict(row) for row in rows]


def _award(context: str, orchestrator: str, actor: str) -> Callable[[Tx], bool]:
    def work(tx: Tx) -> bool:
        own, batch = queries.batch_of(tx, context)
        moves = rules.award(batch, context, orchestrator, actor)
        queries.assign(tx, context, orchestrator, own["attempt"])
        apply(tx, own["pipeline"], moves)
        return bool(moves) or batch.state in BATCH_AWARDED

    return work


def _batch_state(rows: list[Row]) -> rules.BatchState:
    contexts = tuple(
        rules.ContextState(r["uuid"], r["batch"], r["position"], r["state"], r["orchestrator"])
        for r in rows
    )
    first = rows[0]
    return rules.BatchState(first["batch"], first["mode"], first["batch_state"], None, contexts)


def _open(row: Row) -> dict[str, Any]:
    return {key: row[key] for key in ("uuid", "pipeline", "batch", "position", "name")}
