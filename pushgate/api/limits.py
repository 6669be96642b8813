"""The store's refusals of an over-limit change, as the API's 400s.

A write that would change too many rows in one request, or leave a device in too many channels,
is refused by the store before it commits (``store/memberships.py``); every route that writes
devices, channels or bindings answers it the same way, naming the setting and how to get the
change through.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pushgate.api.errors import bad_request
from pushgate.store.memberships import TooManyChannels, TooManyRows


@contextmanager
def within_limits() -> Iterator[None]:
    """Turn a store's refusal of an over-limit change (nothing was written) into a 400 that names
    the setting and says how to get the change through."""
    try:
        yield
    except TooManyRows as exc:
        size = f"would change {exc.wanted:,} rows" if exc.wanted else f"changes more than {exc.limit:,} rows"
        raise bad_request(
            f"this request {size} (devices, their channels and tags, user bindings); one request may "
            f"change at most {exc.limit:,} (limits.max_rows_per_request): split it into smaller "
            "requests (fewer devices, channels or bindings each)",
            {"setting": "limits.max_rows_per_request", "limit": exc.limit, "requested": exc.wanted},
        ) from None
    except TooManyChannels as exc:
        if exc.what.startswith("user"):
            why = f"{exc.what} would be bound to {exc.count:,} channels"
            hint = "a user's channels are added to each of the user's devices; unbind some first"
        else:
            why = f"{exc.what} would be in {exc.count:,} channels"
            hint = "its own and its user's bound channels count together; remove some first"
        raise bad_request(
            f"{why}; the most is {exc.limit:,} (limits.max_channels_per_device): {hint}",
            {"setting": "limits.max_channels_per_device", "limit": exc.limit, "requested": exc.count},
        ) from None
