#!/bin/sh
# voxgate's container entrypoint: secrets from VAR or VAR_FILE (Docker secrets), then
#   serve (the default; also when the arguments start with an option, e.g. --flows mypkg):
#       refuse to start without the required secrets, wait for the database (bounded),
#       migrate, then exec `voxgate serve` so SIGTERM reaches it and it drains;
#   health [--ready]: the image's HEALTHCHECK; a probe is a new process that does not see what this
#       script exported for serve, so it reads the same *_FILE secrets here first;
#   anything else: `voxgate ARGS...` with the secrets loaded (calls, report, db purge --older-than 90d...).
# Secret values are never printed: messages name the variable, or show the database URL redacted.
set -eu

# Every Secret field of controller.config.Settings (tests/docker checks this list against them).
SECRETS="VOXGATE_API_TOKEN VOXGATE_TOKEN_SECRET VOXGATE_DATABASE_URL VOXGATE_ESL_PASSWORD VOXGATE_AMI_SECRET
VOXGATE_MEDIA_WS_PASSWORD VOXGATE_RECORDING_KEYS VOXGATE_OPENAI_API_KEY VOXGATE_DEEPGRAM_API_KEY"
# serve's API is on in the image (its health check needs it), the per-call WebSocket tokens must survive a
# restart and be shared by every instance, and the records must go where the operator says.
REQUIRED="VOXGATE_API_TOKEN VOXGATE_TOKEN_SECRET VOXGATE_DATABASE_URL"

say() { echo "voxgate-entrypoint: $*" >&2; }
die() { say "$*"; exit 2; }

# VAR_FILE names a file holding VAR's value (trailing newlines dropped). voxgate rejects unknown VOXGATE_*
# variables, so every *_FILE is unset once read.
load_secret_files() {
    for name in $SECRETS; do
        eval "file=\${${name}_FILE-}; direct=\${${name}-}"
        unset "${name}_FILE"
        [ -n "$file" ] || continue
        [ -z "$direct" ] || die "$name and ${name}_FILE are both set: keep one"
        { [ -f "$file" ] && [ -r "$file" ]; } || die "${name}_FILE=$file: not a readable file (uid $(id -u))"
        value=$(cat "$file")
        [ -n "$value" ] || die "${name}_FILE=$file is empty"
        export "$name=$value"
    done
    unset file direct value
}

# A secret counts as given in the environment, or as its key in the TOML file named by VOXGATE_CONFIG.
require_secrets() {
    missing=""
    for name in $REQUIRED; do
        eval "value=\${${name}-}"
        [ -z "$value" ] || continue
        key=$(echo "${name#VOXGATE_}" | tr '[:upper:]' '[:lower:]')
        if [ -n "${VOXGATE_CONFIG-}" ] && [ -r "$VOXGATE_CONFIG" ] \
            && grep -Eq "^[[:space:]]*${key}[[:space:]]*=" "$VOXGATE_CONFIG"; then
            continue
        fi
        missing="$missing $name"
    done
    unset value
    [ -z "$missing" ] || die "missing required secret(s):$missing. Set each one, or NAME_FILE to a file" \
        "holding it (a Docker secret: /run/secrets/...). A new random one:" \
        "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
}

# One connection attempt per try, with a short connect timeout; the error is printed redacted.
DB_PROBE='
import os, sys
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from controller.config import MASK, redact_url
url = os.environ["VOXGATE_DATABASE_URL"]
try:
    engine = create_engine(url, connect_args={"connect_timeout": 5})
    with engine.connect() as connection:
        connection.execute(text("select 1"))
except Exception as exc:
    why = (str(exc).splitlines() or [""])[0][:300]
    password = make_url(url).password if "://" in url else None
    if password:
        why = why.replace(password, MASK)
    print(f"voxgate-entrypoint: {redact_url(url)}: {type(exc).__name__}: {why}", file=sys.stderr)
    sys.exit(1)
'

wait_for_database() {
    url=${VOXGATE_DATABASE_URL-}
    case $url in
        postgresql*) ;;
        *) return 0 ;;  # SQLite (or a TOML file's URL, which serve checks itself): nothing to wait for
    esac
    tries=${WAIT_FOR_DB_TRIES:-30}
    interval=${WAIT_FOR_DB_INTERVAL_S:-2}
    n=1
    until python -c "$DB_PROBE"; do
        [ "$n" -lt "$tries" ] || die "the database did not answer after $tries tries; giving up"
        say "waiting for the database (try $n of $tries, again in ${interval}s)"
        sleep "$interval"
        n=$((n + 1))
    done
    unset url
}

if [ "$#" -eq 0 ]; then
    set -- serve
elif [ "${1#-}" != "$1" ]; then
    set -- serve "$@"
fi

load_secret_files
case $1 in
    serve)
        shift
        require_secrets
        wait_for_database
        voxgate db upgrade
        say "starting voxgate serve as uid $(id -u)"
        exec voxgate serve "$@"
        ;;
    *)
        exec voxgate "$@"
        ;;
esac
