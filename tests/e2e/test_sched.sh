#!/usr/bin/env bash
# The scheduler end to end (tests/e2e/sched_test.py drives the real binary).
cd "$(dirname "$0")/../.." && exec /usr/bin/python3 tests/e2e/sched_test.py
