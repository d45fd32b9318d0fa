"""Repositories: the store's side of services/ports.py, a module per aggregate.

They run the prebuilt statements of store/statements/ on the unit of work's connection
(through store/execution.py) and turn rows into domain values (each value's stored form
is domain/stored_json.py's); no ORM objects, no lazy loads.
"""
