"""Stopping a long run on SIGINT / SIGTERM quickly, resumably, and saying how to resume.

The command layer runs every subcommand inside :func:`interruptible`, which installs one
handler for both signals: SIGTERM (what a cluster scheduler or ``kill`` sends) takes the
same path as Ctrl-C, a :class:`KeyboardInterrupt` (:class:`Interrupted`) raised in the main
thread, so Lightning's ``on_exception`` hooks run (see :class:`wspace.checkpoints.SaveOnInterrupt`),
``finally`` blocks close files, and the command ends with one line saying how to resume and
the conventional exit code (130 for SIGINT, 143 for SIGTERM).

Inside a training loop that polls (:func:`check` after every step, between
:func:`poll_begin` and :func:`poll_end`), the first signal is deferred for
:data:`GRACE_S` seconds so the loop can stop at a step boundary (a checkpoint of a whole
step); a step that takes longer is interrupted where it is. A second signal always stops
at once. Outside polling loops the signal interrupts at once. Only stdlib here: the CLI
imports this module before any heavy dependency.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from typing import Any, Iterator

__all__ = ["EXIT_CODES", "GRACE_S", "Interrupted", "interruptible", "requested", "check", "disarm", "poll_begin",
           "poll_end", "set_resume_hint", "message"]

#: exit status per signal (the shell's 128 + signal number)
EXIT_CODES: dict[int, int] = {int(signal.SIGINT): 130, int(signal.SIGTERM): 143}
#: seconds a polling training loop gets to reach the end of its step before it is interrupted mid-step
GRACE_S = 0.5


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread when SIGINT or SIGTERM arrives (``signum`` says which)."""

    def __init__(self, signum: int):
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = int(signum)


class _State:
    """What the handler knows: the first signal received, whether a loop polls, the resume hint."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.polling = 0
        self.hint: str | None = None
        self.resumable = True
        self.timer = False


_state = _State()


def requested() -> int | None:
    """The signal number received inside the current :func:`interruptible` block, or None."""
    return _state.signum


def disarm() -> None:
    """Cancel a pending deferred interrupt (the caller stops or saves by itself now)."""
    if _state.timer:
        signal.setitimer(signal.ITIMER_REAL, 0)
        _state.timer = False


def check() -> None:
    """Raise :class:`Interrupted` if a signal was received (call at a safe point, e.g. after a step)."""
    if _state.signum is not None:
        disarm()
        raise Interrupted(_state.signum)


def poll_begin() -> None:
    """A loop that calls :func:`check` after every step starts: signals get :data:`GRACE_S` to reach it."""
    _state.polling += 1


def poll_end() -> None:
    """The polling loop of :func:`poll_begin` ended: signals interrupt at once again."""
    _state.polling = max(0, _state.polling - 1)


def set_resume_hint(hint: str | None, resumable: bool = True) -> None:
    """What the interrupt message adds in parentheses (e.g. ``"checkpoint out/checkpoints/last.ckpt"``);
    ``resumable=False``: a rerun starts over (nothing partial is kept)."""
    _state.hint, _state.resumable = hint, bool(resumable)


def message(command: str) -> str:
    """The one line printed when ``command`` (e.g. ``"wspace train"``) is interrupted."""
    what = "resume" if _state.resumable else "start again"
    tail = f" ({_state.hint})" if _state.hint else ""
    return f"{command}: interrupted; rerun the same command to {what}{tail}"


def _force(signum: int, frame: Any) -> None:
    _state.timer = False
    if _state.signum is not None:
        raise Interrupted(_state.signum)


def _handle(signum: int, frame: Any) -> None:
    first = _state.signum is None
    if first:
        _state.signum = int(signum)
    if first and _state.polling > 0 and hasattr(signal, "setitimer"):
        signal.signal(signal.SIGALRM, _force)  # the loop gets GRACE_S to stop at a step boundary
        signal.setitimer(signal.ITIMER_REAL, GRACE_S)
        _state.timer = True
        return
    disarm()
    raise Interrupted(_state.signum if _state.signum is not None else int(signum))


@contextlib.contextmanager
def interruptible(command: str, *, exit_now: bool = False) -> Iterator[None]:
    """Run the block with SIGINT and SIGTERM turned into :class:`Interrupted`.

    If a signal arrived, whatever the block raised (the interrupt itself, or the
    ``SystemExit`` Lightning turns it into) becomes: :func:`message` on stderr and
    ``SystemExit`` with the signal's :data:`EXIT_CODES` entry; a block that finished anyway
    exits the same way. ``exit_now`` (for a command-line process): once the block has
    unwound (checkpoint saved, files closed), flush the streams and logs and end the process
    with ``os._exit``, skipping the interpreter's teardown of torch, Lightning and the rest,
    which alone takes 1-2 s on a busy machine. Outside the main thread it does nothing
    (signals go to the main thread).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    names = ["SIGINT", "SIGTERM"] + (["SIGALRM"] if hasattr(signal, "SIGALRM") else [])
    old = {name: signal.getsignal(getattr(signal, name)) for name in names}
    _state.__init__()
    for name in ("SIGINT", "SIGTERM"):
        signal.signal(getattr(signal, name), _handle)
    try:
        yield
    except BaseException:
        disarm()
        if _state.signum is None:
            raise
    finally:
        disarm()
        signum, line = _state.signum, message(command)
        _state.__init__()
        for name, handler in old.items():
            if handler is not None:
                signal.signal(getattr(signal, name), handler)
    if signum is not None:
        print(line, file=sys.stderr, flush=True)
        code = EXIT_CODES.get(signum, 128 + signum)
        if exit_now:
            logging.shutdown()
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os._exit(code)
        raise SystemExit(code)
