"""Webhooks to Voka: events chosen per action in tools.toml (`events = ["order.created"]`), kept in an
outbox in state.sqlite3 in step with the action's commit (server/ledger.py), and POSTed to
`[webhooks] url` by a background worker with Voka's API key and Standard Webhooks v1 signature headers.

One module per concern: `outbox` (storage), `signing` (the signature), `secrets` (the signing secret and
Voka's API key, in the OS keyring), `delivery` (the worker), `commands` (`voka-bridge webhooks ...`).
"""
