"""Which publish an admission gives back for its idempotency key and client publish id
(``store/publishes/client_ids.py:decide``), without a database."""

from __future__ import annotations

from collections.abc import Callable

from pushgate.store.publishes.client_ids import IdConflict, decide
from pushgate.store.publishes.model import Publish

NOW = 1_000_000.0


def _pub(pid: str, *, key: str | None = None, cid: str | None = None, at: float = NOW) -> Publish:
    return Publish(
        id=pid, app_id="app", status="completed", request={}, idempotency_key=key, expire_at=None,
        planning_done=True, error_code=None, error_message=None, created_at=at, started_at=None,
        completed_at=None, client_id=cid,
    )  # fmt: skip


def _maker(made: list[Publish]) -> Callable[[], Publish]:
    def make() -> Publish:
        made.append(_pub(f"pub_new{len(made)}"))
        return made[-1]

    return make


def test_a_client_id_replays_at_any_age_and_a_key_only_inside_the_window() -> None:
    old = _pub("pub_old", key="k", cid="c", at=NOW - 10_000)
    known = ({"k": old}, {"c": old})
    made: list[Publish] = []
    [by_id] = decide(known, [(None, "c")], NOW - 60, _maker(made))
    assert by_id == (old, False, None, None) and made == []
    [by_key] = decide(known, [("k", None)], NOW - 60, _maker(made))
    assert not isinstance(by_key, IdConflict)
    assert by_key[1] is True and by_key[2] == "pub_old"  # the lapsed key is taken over
    [both] = decide(known, [("k", "c")], NOW - 60, _maker(made))
    assert both == (old, False, None, None)


def test_a_key_of_another_publish_contradicts_the_client_id() -> None:
    a = _pub("pub_a", key="k")
    b = _pub("pub_b", cid="b")
    made: list[Publish] = []
    [new_id] = decide(({"k": a}, {}), [("k", "fresh")], NOW - 60, _maker(made))
    [other] = decide(({"k": a}, {"b": b}), [("k", "b")], NOW - 60, _maker(made))
    assert isinstance(new_id, IdConflict) and isinstance(other, IdConflict)
    assert str(new_id).startswith("idempotency_key: 'k' belongs to publish 'pub_a'")
    assert made == []


def test_repeats_inside_one_batch_share_the_first_items_publish() -> None:
    made: list[Publish] = []
    pairs: list[tuple[str | None, str | None]] = [(None, "c"), (None, "c"), ("k", None), ("k", "d")]
    out = decide(({}, {}), pairs, NOW - 60, *(_maker(made) for _ in pairs))
    assert [o if isinstance(o, IdConflict) else (o[0].id, o[1]) for o in out[:3]] == [
        ("pub_new0", True),
        ("pub_new0", False),
        ("pub_new1", True),
    ]
    assert isinstance(out[3], IdConflict)  # "k" is now pub_new1's, which is not "d"
    assert len(made) == 2


def test_a_key_given_after_the_client_id_is_stored_on_its_publish() -> None:
    """The id alone first, then with a key: the key is to be stored on the id's publish (taking a
    lapsed holder's over), and a later item with the key alone finds that publish."""
    mine = _pub("pub_mine", cid="c")
    lapsed = _pub("pub_old", key="k", at=NOW - 10_000)
    made: list[Publish] = []
    pairs: list[tuple[str | None, str | None]] = [("k", "c"), ("k", None)]
    out = decide(({"k": lapsed}, {"c": mine}), pairs, NOW - 60, _maker(made), _maker(made))
    assert out == [(mine, False, "pub_old", "k"), (mine, False, None, None)]
    assert made == []
    # A publish with another key: a contradiction, nothing stored.
    keyed = _pub("pub_keyed", key="k0", cid="d")
    [other] = decide(({}, {"d": keyed}), [("k1", "d")], NOW - 60, _maker(made))
    assert isinstance(other, IdConflict) and str(other).startswith("idempotency_key: publish_id 'd'")
