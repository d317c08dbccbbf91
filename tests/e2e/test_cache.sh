#!/usr/bin/env bash
# The response cache end to end, with a real redis-server the test starts and stops
# (tests/e2e/cache_test.py drives the real binary).
cd "$(dirname "$0")/../.." && exec /usr/bin/python3 tests/e2e/cache_test.py
