"""A TALLY_* variable that names no setting is reported at start, not ignored silently."""

from __future__ import annotations

from server.settings import unknown_variables


def test_a_misspelt_variable_is_named_with_the_setting_it_may_mean() -> None:
    env = {
        "TALLY_WORKER": "2",
        "TALLY_WORKERS": "1",
        "TALLY_TARGET": "127.0.0.1:1",  # the `tally` command's
        "TALLY_TEST_POSTGRES_URL": "x",  # the test suite's
        "TALLY_TOKEN_SECRET": "s" * 32,
        "OTHER": "1",
    }
    assert unknown_variables(env) == [
        "TALLY_WORKER is not a setting, so it is ignored; did you mean TALLY_WORKERS?"
    ]


def test_every_setting_is_known() -> None:
    env = {"TALLY_LISTEN": "x", "TALLY_DATABASE_URL": "x", "TALLY_MAX_OPEN_STREAMS": "1"}
    assert unknown_variables(env) == []
