"""The caller of the current call, as the use cases see it.

The API layer's interceptor establishes the `Caller` once per call (from its API key or
user token) and runs the call in a context that holds it; use cases ask `current()` when
what a caller may do depends on the request (which system, which user, a global boost).
A context variable rather than a parameter of every use case: the checks stay next to
the decisions they guard, use cases keep their signatures, and one that forgets to ask
is caught by the tests that call every RPC with a key limited to another system.

Code that runs in the process itself (the expiry sweep, the use cases' tests, a server
started with --insecure-no-auth) has no call to come from: it is TRUSTED.

A call that lasts (a follower of a live feed) asks `check_still_allowed()` as it goes:
the interceptor that established the caller says how to check that their credentials
still hold (a revoked key's streams end: UNAUTHENTICATED). Without one, it passes.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable

from server.domain.access import TRUSTED, Caller
from server.services.ports import UnitOfWork

_CALLER: contextvars.ContextVar[Caller] = contextvars.ContextVar("tally_caller", default=TRUSTED)
_STILL_ALLOWED: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar(
    "tally_caller_still_allowed", default=None
)


def current() -> Caller:
    return _CALLER.get()


def check_still_allowed() -> None:
    """Raises (an Unauthenticated error) when the current caller's credentials no longer
    hold, e.g. their key was revoked; cheap enough to ask between a stream's items."""
    check = _STILL_ALLOWED.get()
    if check is not None:
        check()


def context_of(
    caller: Caller, still_allowed: Callable[[], None] | None = None
) -> contextvars.Context:
    """A context in which `current()` is `caller` (and `check_still_allowed()` runs
    `still_allowed`): run a call's work in it (ctx.run), and the caller neither leaks into
    the thread's next call nor is lost between the chunks of a stream."""
    context = contextvars.copy_context()
    context.run(_CALLER.set, caller)
    context.run(_STILL_ALLOWED.set, still_allowed)
    return context


def sees_user(uow: UnitOfWork, user_id: str) -> bool:
    """Whether a stored user counts as seen for the current caller. Users are shared by
    every system, but a key limited to some systems (and its user tokens) sees a user only
    through an account in one of them: its answers never reveal that a user exists
    elsewhere (API.md, Auth). A key of every system sees every stored user."""
    caller = current()
    if not caller.systems:
        return True
    return bool(caller.visible(uow.accounts.systems_of(user_id)))
