"""The stream budgets' settings: read like the others, and one caller's share within the
whole."""

from __future__ import annotations

import pytest

from server.settings import SettingError, Settings


def test_stream_budgets_are_read_from_the_environment_and_flags() -> None:
    settings = Settings.load(
        {"TALLY_MAX_OPEN_STREAMS": "8", "TALLY_MAX_STREAMS_PER_KEY": "2"}, max_streams="4"
    )
    assert (settings.max_streams, settings.max_streams_per_key, settings.max_open_streams) == (
        4,
        2,
        8,
    )
    defaults = Settings.load({})
    assert defaults.max_streams_per_key <= defaults.max_streams


def test_one_callers_share_may_not_exceed_the_whole_budget() -> None:
    with pytest.raises(SettingError) as refused:
        Settings.load({"TALLY_MAX_STREAMS": "8"}, max_streams_per_key="9")
    assert str(refused.value) == (
        "--max-streams-per-key (TALLY_MAX_STREAMS_PER_KEY) must be at most the stream "
        "budget TALLY_MAX_STREAMS, 8; got 9"
    )
    with pytest.raises(SettingError, match="TALLY_MAX_OPEN_STREAMS must be a whole number"):
        Settings.load({"TALLY_MAX_OPEN_STREAMS": "0"})
