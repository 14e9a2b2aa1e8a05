#!/usr/bin/env bash
# `make serve`: the local Prefect server (`barkeeper server start`), barkeeper's deployments and
# a worker. Ctrl-C (or SIGTERM) stops everything this script started.
#
# Environment (all optional):
#   PORT                    server port (default 4200)
#   PREFECT_HOME            the server's folder (default $BARKEEPER_SERVER_HOME, else ./.prefect,
#                           so your own profile is untouched)
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
export PREFECT_HOME="${PREFECT_HOME:-${BARKEEPER_SERVER_HOME:-$project_dir/.prefect}}"
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export PREFECT_WORKER_QUERY_SECONDS="${PREFECT_WORKER_QUERY_SECONDS:-5}"
export BARKEEPER_DATABASE_URL="${BARKEEPER_DATABASE_URL:-sqlite:///$project_dir/barkeeper.db}"
mkdir -p "$PREFECT_HOME"

pids=()
own_server=false
stop() {
  trap - INT TERM EXIT
  echo "stopping the worker and the server ..." >&2
  # The worker first: it reports its last states while the server still listens (a worker
  # whose server is gone keeps retrying). It gets 10 s to finish, then it is killed.
  local pid
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || continue
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  # A server that was already running when we started is left running.
  if $own_server; then "$bin/barkeeper" server stop --home "$PREFECT_HOME" >&2 || true; fi
}
trap stop EXIT
trap 'exit 0' INT  # Ctrl-C is how you stop it: not an error
trap 'exit 143' TERM

# The same server `barkeeper server start` runs: replays from the command line share its API.
if ! "$bin/barkeeper" server status --home "$PREFECT_HOME" >/dev/null; then own_server=true; fi
# (one already running keeps its port)
PREFECT_API_URL=$("$bin/barkeeper" server start --home "$PREFECT_HOME" --port "$port" --json \
  | "$bin/python" -c 'import json, sys; print(json.load(sys.stdin)["api_url"])')
export PREFECT_API_URL

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

barkeeper is deployed. Prefect UI: ${PREFECT_API_URL%/api}
  Data Docs and reports: $BARKEEPER_REPORTS_URL/data_docs/index.html ($BARKEEPER_REPORTS_DIR)
  deployments: replay_sessions/replay (Custom run), nightly_audit/nightly-audit (weekdays 17:30 New York)
  store: $BARKEEPER_DATABASE_URL
  logs: $PREFECT_HOME/server.log, $PREFECT_HOME/worker.log
  commands run from here use this server (or: export PREFECT_API_URL=$PREFECT_API_URL)
Press Ctrl-C to stop.
EOF
wait "${pids[@]}"
