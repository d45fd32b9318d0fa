"""Use cases: each opens one unit of work, applies the domain rules and commits."""
