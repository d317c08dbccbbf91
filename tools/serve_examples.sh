#!/usr/bin/env bash
# `make run`: serve the bundled example repository on embedded defaults and print a
# request to paste. Env: BINDIR (default bin), DABBA_HTTP_PORT (default 8000); every other
# DABBA_* setting applies too (README: Configuration).
set -eu
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BINDIR="${BINDIR:-bin}"
PORT="${DABBA_HTTP_PORT:-8000}"
cat <<MSG
dabba: serving examples/repository on http://localhost:$PORT (Ctrl-C drains and stops)
Try, in another terminal:
  curl -s localhost:$PORT/v2/models/digits_mlp/infer -d '{"inputs":[{"name":"pixels","datatype":"FP32","shape":[1,64],"data":[0,0,0.3125,0.8125,0.5625,0.0625,0,0,0,0,0.8125,0.9375,0.625,0.9375,0.3125,0,0,0.1875,0.9375,0.125,0,0.6875,0.5,0,0,0.25,0.75,0,0,0.5,0.5,0,0,0.3125,0.5,0,0,0.5625,0.5,0,0,0.25,0.6875,0,0.0625,0.75,0.4375,0,0,0.125,0.875,0.3125,0.625,0.75,0,0,0,0,0.375,0.8125,0.625,0,0,0]}]}'
  curl -s localhost:$PORT/v2/models/digits_mlp
  curl -s localhost:$PORT/metrics | head
(tools/run_examples.sh classifies held-out digits from the command line instead.)
MSG
exec "$BINDIR/dabba" serve --repository examples/repository --http-port "$PORT" --log-format text
