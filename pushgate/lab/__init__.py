"""The provider lab: a standalone program that simulates FCM, Web Push, APNs, HMS, WNS and MiPush.

It is reached only over the network, exactly like the real services, and serves them the way
they are served (TLS with the lab's CA, HTTP/2 where the service offers it), so pushgate's
providers and production transport are exercised end to end: OAuth grants, provider JWTs and
VAPID are verified, Web Push bodies are decrypted, and every accepted delivery lands in a ledger
that tests can read. Faults (unregistered tokens, throttling, outages, latency) are injected over
HTTP.
"""
