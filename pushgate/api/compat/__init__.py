"""The seed systems' own APIs (docs/compat.md), each a thin translation onto the native engine.

A front-end maps one foreign API's routes, authentication and shapes onto the services the
native ``/v1`` API calls: it holds no engine logic of its own. Each lives in its own module of
this package and is listed once in ``mount.py:FRONT_ENDS``.
"""
