#!/usr/bin/env bash
# `make serve`: a local Prefect server with its own home, barkeeper's deployments and a worker.
# Ctrl-C (or SIGTERM) stops everything this script started.
#
# Environment (all optional):
#   PORT                    server port (default 4200)
#   PREFECT_HOME            Prefect's folder (default ./.prefect, so your own profile is untouched)
#   BARKEEPER_DATABASE_URL  the store the flow runs use (default ./barkeeper.db)
#   BARKEEPER_SERVE_READY   file to touch once the worker is up (used by the tests)
#   REPORTS_PORT            port the reports folder (Data Docs) is served on (default PORT+1)
#   BARKEEPER_REPORTS_DIR   the reports folder (default ./barkeeper_reports)
#   BARKEEPER_REPORTS_URL   where reports are served already (then no reports server starts)
set -euo pipefail
cd "$(dirname "$0")/.."
project_dir=$(pwd)
bin="${BARKEEPER_BIN:-$project_dir/.venv/bin}"

port="${PORT:-4200}"
pool="barkeeper-pool"
export PREFECT_HOME="${PREFECT_HOME:-$project_dir/.prefect}"
export PREFECT_API_URL="http://127.0.0.1:$port/api"
# The UI calls this API address from the browser; without it, any port but 4200 breaks the UI.
export PREFECT_UI_API_URL="$PREFECT_API_URL"
export PREFECT_SERVER_API_HOST=127.0.0.1
export PREFECT_SERVER_API_PORT="$port"
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export PREFECT_WORKER_QUERY_SECONDS="${PREFECT_WORKER_QUERY_SECONDS:-5}"
export BARKEEPER_DATABASE_URL="${BARKEEPER_DATABASE_URL:-sqlite:///$project_dir/barkeeper.db}"
mkdir -p "$PREFECT_HOME"

pids=()
stop() {
  trap - INT TERM EXIT
  echo "stopping the worker and the server ..." >&2
  # Newest first: the worker reports its last states while the server still listens (a worker
  # whose server is gone keeps retrying). Each gets 10 s to finish, then it is killed.
  local i pid
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    pid=${pids[i]}
    kill -TERM "$pid" 2>/dev/null || continue
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}
trap stop EXIT
trap 'exit 0' INT  # Ctrl-C is how you stop it: not an error
trap 'exit 143' TERM

echo "starting the Prefect server on port $port (home $PREFECT_HOME) ..." >&2
"$bin/prefect" server start --host 127.0.0.1 --port "$port" >"$PREFECT_HOME/server.log" 2>&1 &
pids+=($!)

for _ in $(seq 1 120); do
  if "$bin/python" - "$PREFECT_API_URL/health" <<'EOF' 2>/dev/null; then break; fi
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=2).read()
EOF
  if ! kill -0 "${pids[0]}" 2>/dev/null; then
    echo "the Prefect server exited; see $PREFECT_HOME/server.log" >&2
    exit 1
  fi
  sleep 0.5
done

# --- Data Docs over HTTP: the reports folder on its own port; artifacts link to its pages
# (a browser does not open file:// links from the Prefect UI).
export BARKEEPER_REPORTS_DIR="${BARKEEPER_REPORTS_DIR:-$project_dir/barkeeper_reports}"
mkdir -p "$BARKEEPER_REPORTS_DIR"
if [ -z "${BARKEEPER_REPORTS_URL:-}" ]; then
  reports_port="${REPORTS_PORT:-$((port + 1))}"
  export BARKEEPER_REPORTS_URL="http://127.0.0.1:$reports_port"
  "$bin/python" -m http.server "$reports_port" --bind 127.0.0.1 \
    --directory "$BARKEEPER_REPORTS_DIR" >"$PREFECT_HOME/reports.log" 2>&1 &
  pids+=($!)
fi
# ---

"$bin/barkeeper" init --db "$BARKEEPER_DATABASE_URL" >&2
"$bin/prefect" work-pool inspect "$pool" >/dev/null 2>&1 \
  || "$bin/prefect" work-pool create "$pool" --type process >&2
"$bin/prefect" --no-prompt deploy --all >"$PREFECT_HOME/deploy.log" 2>&1 \
  || { cat "$PREFECT_HOME/deploy.log" >&2; exit 1; }

# --- Automations of automations/*.yaml (an automation whose notification block does not exist
# yet is skipped with the command that creates it).
"$bin/barkeeper" automations apply >&2
# ---

"$bin/prefect" worker start --pool "$pool" >"$PREFECT_HOME/worker.log" 2>&1 &
pids+=($!)

if [ -n "${BARKEEPER_SERVE_READY:-}" ]; then touch "$BARKEEPER_SERVE_READY"; fi
cat >&2 <<EOF

barkeeper is deployed. Prefect UI: http://127.0.0.1:$port
  Data Docs and reports: $BARKEEPER_REPORTS_URL/data_docs/index.html ($BARKEEPER_REPORTS_DIR)
  deployments: replay_sessions/replay (Custom run), nightly_audit/nightly-audit (weekdays 17:30 New York)
  store: $BARKEEPER_DATABASE_URL
  logs: $PREFECT_HOME/server.log, $PREFECT_HOME/worker.log
Press Ctrl-C to stop.
EOF
wait "${pids[@]}"
