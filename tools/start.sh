#!/usr/bin/env bash
# `make start`: Azurite on its standard ports beside the Functions host.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v func >/dev/null; then
  cat >&2 <<'MSG'
Azure Functions Core Tools (`func`) are not installed. Install v4 from
https://learn.microsoft.com/azure/azure-functions/functions-run-local, or run
`make demo`, which calls the functions in-process against Azurite, or
`make serve`, a stand-in for the host that serves the HTTP API on port 7071.
MSG
  exit 1
fi
test -f local.settings.json || cp local.settings.sample.json local.settings.json
node_modules/.bin/azurite --inMemoryPersistence --silent --skipApiVersionCheck --loose &
trap 'kill $!' EXIT
# shellcheck disable=SC1091
. .venv/bin/activate
func start
