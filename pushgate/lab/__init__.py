"""The provider lab: a standalone program that simulates all six providers pushgate delivers to.

FCM HTTP v1 (with Google's OAuth token endpoint), Web Push, APNs (HTTP/2, token or certificate
auth), Huawei Push Kit, WNS and Xiaomi MiPush. It is reached only over the network, exactly like
the real services, and serves them the way they are served (TLS with the lab's CA, HTTP/2 where
the service offers it), so pushgate's providers and production transport are exercised end to
end: OAuth grants, VAPID and APNs JWTs and client certificates are verified, Web Push bodies are
decrypted, each provider's fields and size limits are checked, and every accepted delivery lands
in a ledger that tests can read. Faults (unregistered tokens, throttling, outages, latency) are
injected over HTTP. The wire facts the simulators follow are in docs/providers.md.
"""
