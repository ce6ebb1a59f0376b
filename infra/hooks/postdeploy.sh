#!/bin/sh
# azd postdeploy hook: subscribe the client_lifecycle function to the MQTT client life
# cycle events of the Event Grid namespace. Event Grid checks that an Azure Function
# destination exists when the subscription is created, so this runs after the code is
# deployed.
#
# One Azure Resource Manager request: a PUT of the subscription that main.bicep
# describes in its outputs (EVENTGRID_LIFECYCLE_SUBSCRIPTION_URL, the body
# EVENTGRID_LIFECYCLE_SUBSCRIPTION), signed with azd's own sign-in (`azd auth token`),
# then the operation followed to its end. Neither the Azure CLI nor the Bicep CLI is
# needed, so it runs wherever azd is signed in, in a pipeline set up by
# `azd pipeline config` too. Needs curl. Run it again with `azd hooks run postdeploy`.
set -eu

for name in EVENTGRID_LIFECYCLE_SUBSCRIPTION_URL EVENTGRID_LIFECYCLE_SUBSCRIPTION; do
  eval "value=\${$name:-}"
  if [ -z "$value" ]; then
    echo "postdeploy: $name is not set; run 'azd provision' first." >&2
    exit 1
  fi
done
if ! command -v curl >/dev/null 2>&1; then
  echo "postdeploy: curl is needed to create the life cycle event subscription; install it, then run 'azd hooks run postdeploy'." >&2
  exit 1
fi

attempts=${POSTDEPLOY_ATTEMPTS:-6}         # the function may not be listed yet right after a deployment
retry_seconds=${POSTDEPLOY_RETRY_SECONDS:-20}
poll_seconds=${POSTDEPLOY_POLL_SECONDS:-5}
polls=${POSTDEPLOY_POLLS:-36}              # about three minutes per attempt

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

# A token for Azure Resource Manager from azd's sign-in, in the deployment's tenant.
if ! azd auth token --output json ${AZURE_TENANT_ID:+--tenant-id "$AZURE_TENANT_ID"} \
    >"$work/token.json" 2>"$work/token.err"; then
  sed 's/^/postdeploy:   /' "$work/token.err" >&2
  echo "postdeploy: azd has no token for Azure Resource Manager: sign in with 'azd auth login'" \
    "(in a pipeline: the credential 'azd pipeline config' set up), then run 'azd hooks run postdeploy'." >&2
  exit 1
fi
token=$(tr -d '\r\n' <"$work/token.json" | sed -n 's/.*"token"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p')
if [ -z "$token" ]; then
  echo "postdeploy: 'azd auth token --output json' printed no token; is azd up to date (azure.yaml, requiredVersions)?" >&2
  exit 1
fi
# The token reaches curl through a file in the private temporary folder, never a command line.
printf 'header = "Authorization: Bearer %s"\n' "$token" >"$work/auth"
printf '%s' "$EVENTGRID_LIFECYCLE_SUBSCRIPTION" >"$work/body.json"

# request METHOD URL [curl options]: prints the HTTP status (000: no answer); the
# response body goes to $work/response, its headers to $work/headers.
request() {
  method=$1
  url=$2
  shift 2
  : >"$work/response"
  : >"$work/headers"
  curl --silent --show-error --max-time 60 --config "$work/auth" --request "$method" \
    --dump-header "$work/headers" --output "$work/response" --write-out '%{http_code}' \
    "$@" "$url" 2>"$work/curl.err" || true
}

# field NAME: the first string value of key NAME in the last response.
field() {
  tr -d '\r\n' <"$work/response" | grep -oE "\"$1\"[[:space:]]*:[[:space:]]*\"[^\"]*\"" | head -n 1 |
    sed 's/^.*:[[:space:]]*"\(.*\)"$/\1/'
}

# The state of the operation: "status" of an Azure-AsyncOperation, else the resource's provisioningState.
state() {
  found=$(field status)
  [ -n "$found" ] || found=$(field provisioningState)
  printf '%s' "$found"
}

problem() {
  message=$(field message)
  [ -n "$message" ] || message=$(cat "$work/curl.err")
  printf '%s' "$message"
}

# Follow the operation the PUT started ("Azure-AsyncOperation" header, else the resource itself).
follow() {
  operation=$(tr -d '\r' <"$work/headers" | sed -n 's/^[Aa][Zz][Uu][Rr][Ee]-[Aa][Ss][Yy][Nn][Cc][Oo][Pp][Ee][Rr][Aa][Tt][Ii][Oo][Nn]:[[:space:]]*//p' | tail -n 1)
  current=$(state)
  if [ -n "$operation" ]; then
    current=InProgress
  fi
  poll=0
  while :; do
    case $current in
      Succeeded) return 0 ;;
      Failed | Canceled)
        echo "postdeploy: the subscription was not created ($current): $(problem)" >&2
        return 1 ;;
    esac
    if [ "$poll" -ge "$polls" ]; then
      echo "postdeploy: the subscription is still ${current:-in progress} after $polls checks." >&2
      return 1
    fi
    poll=$((poll + 1))
    sleep "$poll_seconds"
    code=$(request GET "${operation:-$EVENTGRID_LIFECYCLE_SUBSCRIPTION_URL}")
    if [ "$code" = 200 ]; then
      current=$(state)
    fi
  done
}

attempt=1
while :; do
  echo "postdeploy: creating the life cycle event subscription (attempt $attempt of $attempts)..."
  code=$(request PUT "$EVENTGRID_LIFECYCLE_SUBSCRIPTION_URL" \
    --header 'Content-Type: application/json' --data-binary "@$work/body.json")
  case $code in
    200 | 201 | 202)
      if follow; then
        echo "postdeploy: client_lifecycle subscribed to the MQTT client life cycle events."
        exit 0
      fi ;;
    401 | 403)
      echo "postdeploy: Azure Resource Manager refused the request (HTTP $code): $(problem)" >&2
      echo "postdeploy: the account azd signs in with needs to create event subscriptions in the resource" \
        "group (for example Contributor), as 'azd provision' does." >&2
      exit 1 ;;
    *)
      echo "postdeploy: HTTP $code: $(problem)" >&2 ;;
  esac
  if [ "$attempt" -ge "$attempts" ]; then
    echo "postdeploy: could not create the event subscription; is the client_lifecycle function deployed?" \
      "Run 'azd hooks run postdeploy' to try again." >&2
    exit 1
  fi
  attempt=$((attempt + 1))
  sleep "$retry_seconds"
done
