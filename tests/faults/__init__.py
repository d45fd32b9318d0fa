"""The fault suite: the real server, as separate processes on loopback, killed, stopped and
deprived of its database under load, then the ledger checked against what the clients
were told. Short form: `.venv/bin/pytest tests/faults`; full form: `python -m tests.faults`
(tests/faults/README.md)."""
