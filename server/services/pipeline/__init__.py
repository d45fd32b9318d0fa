"""The write pipeline: points changes queued by the use cases, decided by the domain as
one batch (domain/batch.py) and posted by the store in group commits (writer -> posting),
with idempotent responses kept in their stored form (idempotency, codec)."""
