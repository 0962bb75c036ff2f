#!/usr/bin/env bash
# Run a command against one local Prefect server started for it (and stopped after it), instead of
# every `python -m flows.<stage>` starting and stopping a temporary server of its own
# (docs/orchestration.md has the measurement). An already set PREFECT_API_URL is used as it is.
#   scripts/with_prefect_server.sh dvc repro report
set -euo pipefail
if [ -n "${PREFECT_API_URL:-}" ]; then exec "$@"; fi
port=$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=${PREFECT_SERVER_LOG:-prefect-server.log}
prefect server start --host 127.0.0.1 --port "$port" > "$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT INT TERM
export PREFECT_API_URL="http://127.0.0.1:$port/api"
python - <<PY
import time, urllib.request
for _ in range(120):
    try:
        urllib.request.urlopen("$PREFECT_API_URL/health", timeout=1)
        break
    except OSError:
        time.sleep(0.5)
else:
    raise SystemExit("Prefect server did not start; see $log")
PY
"$@"
