"""Centrifugo PRO's push notification API (docs/compat.md, "Centrifugo PRO"), on the native
engine: ``routes.py`` (the two HTTP forms and the method table), ``protocol.py`` (keys,
envelopes, error codes), ``devices.py``, ``topics.py`` and ``push.py`` (the methods).
``mount.py:FRONT_ENDS`` lists it with :func:`build` and :data:`exception_handlers`."""

from __future__ import annotations

from pushgate.api.compat.centrifugo.protocol import exception_handlers
from pushgate.api.compat.centrifugo.routes import build

__all__ = ["build", "exception_handlers"]
