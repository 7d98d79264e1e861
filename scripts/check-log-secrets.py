#!/usr/bin/env python3
"""Fails if a secret the tests met appears in a log line the tests captured.

Usage: scripts/check-log-secrets.py LOGDIR

LOGDIR is the FEDBROKER_TEST_LOG_DIR of a test run (scripts/test.sh sets it): log-PID.log files,
one log event per line, and secrets-PID.tsv ledgers, `kind<TAB>form` per line, written by
Tests/TestSupport/TestLogging.swift (tokens and client assertions the emulator signed, envelope
keys the emulated vault wrapped or unwrapped, data keys and blobs the tests' clients received).

A line fails when it contains any ledger form, a `[12, 34, ...]` byte list whose bytes are a
ledger secret, or anything shaped like a JWT. Offending lines are printed with the secret
replaced, never the secret itself. Exit 0: clean; 1: a secret was found; 2: nothing to check.
"""

import glob
import os
import re
import sys

# Ledger forms are hex, base64, base64url and JWTs: looked up through runs of these characters
# (fast); any other form (a printable plaintext with spaces) is searched for in every line.
RUN = re.compile(r"[A-Za-z0-9+/=_.\-]{16,}")
RUN_CHARS = re.compile(r"^[A-Za-z0-9+/=_.\-]+$")
PROBE = 16  # every form is at least TestLogging's SecretLedger.minimumLength (16)
JWT = re.compile(r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*")
BYTE_LIST = re.compile(r"\[(\d{1,3}(?:, ?\d{1,3}){11,})\]")


def load_ledger(directory):
    by_probe = {}  # first PROBE characters -> [(form, kind)]
    others = []  # forms with characters outside RUN
    count = 0
    for path in sorted(glob.glob(os.path.join(directory, "secrets-*.tsv"))):
        with open(path, encoding="utf-8", errors="replace") as f:
            for raw in f:
                kind, sep, form = raw.rstrip("\n").partition("\t")
                if not sep or len(form) < PROBE:
                    continue
                count += 1
                if RUN_CHARS.match(form):
                    by_probe.setdefault(form[:PROBE], []).append((form, kind))
                else:
                    others.append((form, kind))
    return by_probe, others, count


def find_in_run(text, by_probe):
    """(form, kind) of a ledger form inside `text`, or None."""
    for i in range(len(text) - PROBE + 1):
        candidates = by_probe.get(text[i:i + PROBE])
        if candidates:
            for form, kind in candidates:
                if text.startswith(form, i):
                    return form, kind
    return None


def offences(line, by_probe, others):
    found = []
    for run in RUN.findall(line):
        hit = find_in_run(run, by_probe)
        if hit:
            found.append(hit)
    for form, kind in others:
        if form in line:
            found.append((form, kind))
    for match in BYTE_LIST.finditer(line):
        values = [int(v) for v in re.split(r", ?", match.group(1))]
        if all(v < 256 for v in values):
            hit = find_in_run(bytes(values).hex(), by_probe)
            if hit:
                found.append((match.group(0), hit[1] + " (as a byte list)"))
    for match in JWT.finditer(line):
        found.append((match.group(0), "jwt-shaped"))
    return found


def redact(line, found, limit=400):
    for text, kind in found:
        line = line.replace(text, "<%s: %d chars>" % (kind, len(text)))
    return line if len(line) <= limit else line[:limit] + "..."


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    directory = sys.argv[1]
    by_probe, others, secrets = load_ledger(directory)
    logs = sorted(glob.glob(os.path.join(directory, "log-*.log")))
    lines = 0
    failures = 0
    for path in logs:
        with open(path, encoding="utf-8", errors="replace") as f:
            for number, line in enumerate(f, 1):
                lines += 1
                found = offences(line.rstrip("\n"), by_probe, others)
                if found:
                    failures += 1
                    if failures <= 50:
                        print("%s:%d: %s" % (os.path.basename(path), number, redact(line.rstrip("\n"), found)))
    print("check-log-secrets: %d log lines in %d files checked against %d secret forms" % (lines, len(logs), secrets))
    if failures:
        print("check-log-secrets: %d lines contain a secret (first 50 shown, redacted)" % failures, file=sys.stderr)
        return 1
    if lines == 0 or secrets == 0:
        print("check-log-secrets: nothing captured in %s; was FEDBROKER_TEST_LOG_DIR set for the tests?" % directory, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
