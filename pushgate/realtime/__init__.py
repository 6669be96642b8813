"""The realtime gateway: a socket.io server on pushgate's own port for clients that are online.

``tokens.py`` signs and checks connection tokens (HS256 JWTs: who the client is and which
channels it may join); ``gateway.py`` is the socket.io server, its sessions and rooms, and the
presence count. docs/realtime.md is the user's page.
"""
