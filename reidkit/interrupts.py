"""Signals as flags: Ctrl-C (SIGINT) and a scheduler's SIGTERM stop long work at a safe point, never mid-write.

A KeyboardInterrupt raised straight from a signal handler may land inside h5py's or a C callback's cleanup, where
it is printed as 'ignored' and lost; the loops that write therefore check a flag the handler sets.
"""
from __future__ import annotations

import contextlib
import signal
import threading


@contextlib.contextmanager
def signal_flag(signum: int = signal.SIGINT):
    """A ``threading.Event`` set when ``signum`` arrives, for as long as the block runs; the previous handler is put
    back after it. Outside the main thread (signals cannot be caught there) the flag is never set."""
    flag = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = signal.signal(signum, lambda number, frame: flag.set())
    try:
        yield flag
    finally:
        # None: a handler not set from Python; the default then
        signal.signal(signum, signal.SIG_DFL if previous is None else previous)


@contextlib.contextmanager
def ctrl_c_at_safe_points():
    """Ctrl-C as a flag a loop checks at its safe points (between training steps): a KeyboardInterrupt raised at
    any bytecode may land in a finaliser or a C callback, where Python prints it as 'ignored' and the work goes on
    (a CI run saw a Ctrl-C'd training keep training). A second Ctrl-C raises at once, wherever the work is."""
    flag = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(number, frame):
        if flag.is_set():
            raise KeyboardInterrupt
        flag.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)


def interrupt_flag():
    """The Ctrl-C flag (a write loop raises KeyboardInterrupt itself once it is at a safe point)."""
    return signal_flag(signal.SIGINT)


def sigterm_as_interrupt():
    """From now on SIGTERM (a batch scheduler ending the job, ``kill``) does what Ctrl-C does in this process at that
    moment: raise KeyboardInterrupt, or set the flag of a loop that is writing. Records that it came, for the exit line."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(number, frame):
        TERMINATED.set()
        current = signal.getsignal(signal.SIGINT)
        if callable(current):
            current(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


TERMINATED = threading.Event()  # SIGTERM came (the exit line says so; exit status 143 instead of 130)
