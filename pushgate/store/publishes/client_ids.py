"""Which publish an admission gives back: idempotency keys and client-chosen publish ids.

Pure: :func:`decide` takes what the store found for the keys and ids of one admission (a
single publish or a batch) and says, per item, whether it is new, a replay, or a contradiction.
Both are unique per app (``uq_publishes_idempotency``, ``uq_publishes_client_id``); a client id
lasts as long as its publish (retention deletes it: docs/campaigns.md), a key lapses after the
idempotency window. A key given with the client id of a publish that has none is stored on it
(:data:`Decision`'s fourth element), so the key alone later finds the same publish.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pushgate.store.publishes.model import Publish


class IdConflict(ValueError):
    """``idempotency_key`` and ``publish_id`` name two different publishes (a 400)."""


#: One item's fate: ``(publish, created, the id of a publish whose lapsed key it takes over,
#: the key to store on the found publish)``; the last is set only for a known client id whose
#: publish has no key yet (the caller writes it, then the key alone finds that publish).
Decision = tuple[Publish, bool, str | None, str | None] | IdConflict


def decide(
    known: tuple[dict[str, Publish], dict[str, Publish]],
    pairs: Sequence[tuple[str | None, str | None]],
    oldest: float,
    *makers: Callable[[], Publish],
) -> list[Decision]:
    """Per ``(idempotency key, client id)`` in order: ``(publish, created, key to release, key
    to store)`` or an :class:`IdConflict`. A client id finds its publish while it exists; a key
    only inside the window (an older one is released for the new publish, or for the found
    publish that takes it). A client id's publish with another key than the one given is a
    conflict. Within the list, a later item with an earlier item's key or client id gets that
    item's publish."""
    by_key, by_cid = dict(known[0]), dict(known[1])
    out: list[Decision] = []
    for (key, cid), make in zip(pairs, makers, strict=True):
        old = by_key.get(key) if key is not None else None
        live = old if old is not None and old.created_at >= oldest else None
        mine = by_cid.get(cid) if cid is not None else None
        if live is not None and cid is not None and live is not mine:
            out.append(
                IdConflict(
                    f"idempotency_key: {key!r} belongs to publish {live.public_id!r}, not to "
                    f"publish_id {cid!r}; give the same pair again, or only one of them"
                )
            )
            continue
        if mine is not None and key is not None and mine.idempotency_key not in (None, key):
            out.append(
                IdConflict(
                    f"idempotency_key: publish_id {cid!r} was given the key "
                    f"{mine.idempotency_key!r}, not {key!r}; give the same pair again, or only one"
                )
            )
            continue
        if mine is not None and key is not None and mine.idempotency_key is None:
            # The key comes after the id: stored on its publish (releasing a lapsed holder's).
            out.append((mine, False, old.id if old is not None else None, key))
            by_key[key] = mine
            continue
        found = mine if mine is not None else live
        if found is not None:
            out.append((found, False, None, None))
            continue
        pub = make()
        out.append((pub, True, old.id if old is not None else None, None))
        if key is not None:
            by_key[key] = pub
        if cid is not None:
            by_cid[cid] = pub
    return out
