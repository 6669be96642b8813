"""The one registry of delivery paths: every other list of providers is derived from it.

Each provider module owns its :class:`~pushgate.providers.base.ProviderSpec`: the typed
settings Struct (its config section, with defaults and bounds declared once), the provider
class, the pure renderer from ``domain/render_<name>.py``, the device platforms and native
recipient kinds it accepts, its token rule and what may be shown of its credentials. The
config loader, the provider pool, the API's provider names, credential shapes and native
recipients, the retry and rate-limit sections all read this table, so adding a provider is
its modules plus one line in ``BUILTIN``.

Why here, in ``providers/``: a spec holds a provider class and its settings, which belong to
this layer; ``domain/`` keeps the pure parts (renderers, platform names) and never looks a
provider up by name, so it needs no registry of its own. ``engine/`` and ``api/`` (above)
and ``config.py`` read the table; nothing below imports it.

The table is module state so a test can add a delivery path in-process: :func:`registered`
adds specs and restores the table afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pushgate.providers import apns, fcm, hms, mipush, webpush, wns
from pushgate.providers.base import ProviderSpec

__all__ = ["BUILTIN", "ProviderSpec", "find", "get", "names", "native", "registered", "specs"]

#: Order is the order providers are listed in (health reports, ``config show``).
BUILTIN: tuple[ProviderSpec, ...] = (fcm.SPEC, webpush.SPEC, hms.SPEC, wns.SPEC, apns.SPEC, mipush.SPEC)

_SPECS: dict[str, ProviderSpec] = {spec.name: spec for spec in BUILTIN}


def names() -> tuple[str, ...]:
    """Every provider this build can deliver to."""
    return tuple(_SPECS)


def specs() -> tuple[ProviderSpec, ...]:
    return tuple(_SPECS.values())


def get(name: str) -> ProviderSpec:
    """The spec of ``name``; ``KeyError`` for a name no provider has."""
    return _SPECS[name]


def find(name: str) -> ProviderSpec | None:
    return _SPECS.get(name)


def native(recipient_type: str) -> tuple[ProviderSpec, str] | None:
    """The provider and target kind of a native publish recipient (``fcm_topic`` → FCM, ``topic``)."""
    for spec in _SPECS.values():
        kind = spec.native.get(recipient_type)
        if kind is not None:
            return spec, kind
    return None


@contextmanager
def registered(*extra: ProviderSpec) -> Iterator[None]:
    """Add delivery paths for the duration of a ``with`` block (tests; plugins at start-up).

    Settings loaded and apps built inside the block see them; the table is restored on exit.
    """
    saved = dict(_SPECS)
    for spec in extra:
        if spec.name in _SPECS:
            raise ValueError(f"provider {spec.name!r} is already registered")
        _SPECS[spec.name] = spec
    try:
        yield
    finally:
        _SPECS.clear()
        _SPECS.update(saved)
