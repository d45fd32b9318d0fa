"""The bound on Reverse's look-ups by entry id alone: read like the write limit, from the
environment or a flag (which wins), 5 a second and a burst of 10 when unset."""

from __future__ import annotations

from server.settings import Settings


def test_the_entry_lookup_limit_is_read_from_the_environment_and_flags() -> None:
    defaults = Settings.load({})
    assert (defaults.entry_lookup_limit_per_second, defaults.entry_lookup_limit_burst) == (5, 10)
    env = {"TALLY_ENTRY_LOOKUP_LIMIT_PER_SECOND": "0", "TALLY_ENTRY_LOOKUP_LIMIT_BURST": "5"}
    settings = Settings.load(env, entry_lookup_limit_burst="7")
    assert (settings.entry_lookup_limit_per_second, settings.entry_lookup_limit_burst) == (0, 7)
