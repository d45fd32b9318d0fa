"""The write pipeline: points changes queued by the use cases, decided by the domain and
posted by the store in group commits (writer -> posting), with idempotent responses kept
and replayed (idempotency, codec) and what each change comes to (results)."""
