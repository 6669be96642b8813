"""The provider lab: a standalone program that simulates FCM HTTP v1 and Web Push.

It is reached only over the network, exactly like the real services, so pushgate's
providers are exercised end to end: OAuth assertions and VAPID JWTs are verified, Web Push
bodies are decrypted, and every accepted delivery lands in a ledger that tests can read.
Faults (unregistered tokens, throttling, outages, latency) are injected over HTTP.
"""
