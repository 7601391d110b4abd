#!/usr/bin/env python
"""Stamp every line a command prints with the seconds since it started: when did the demo's first table appear?

    t0=$(date +%s.%N); reidkit demo --out demo-output 2>&1 | python benchmarks/stamp_lines.py "$t0"

Reads unbuffered (a carriage return ends a line too, so progress bars do not hold lines back) and drops the
progress bars' rate lines; the stamp is the time the line arrived.
"""
from __future__ import annotations

import sys
import time

PROGRESS = ("img/s", "row/s", "it/s")


def stamp(line: bytes, t0: float) -> None:
    text = line.decode(errors="replace")
    if not any(p in text for p in PROGRESS):
        sys.stdout.write(f"[{time.time() - t0:7.1f}] {text}\n")
        sys.stdout.flush()


def main(t0: float) -> None:
    pending = b""
    while chunk := sys.stdin.buffer.read1(65536):
        *lines, pending = (pending + chunk.replace(b"\r", b"\n")).split(b"\n")
        for line in lines:
            stamp(line, t0)
    if pending:  # the last line, without its newline
        stamp(pending, t0)


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else time.time())
