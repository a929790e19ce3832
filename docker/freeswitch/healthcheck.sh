#!/bin/sh
# FreeSWITCH is healthy when its event socket answers and mod_audio_fork is loaded. The ESL password is read
# from the mounted event_socket.conf.xml, so compose never holds it (fs_cli -p shows it in the process list while
# the probe runs, as fs_cli does anywhere).
set -eu
conf=${ESL_CONF:-/usr/local/freeswitch/conf/autoload_configs/event_socket.conf.xml}
password=$(sed -n 's/.*name="password"[[:space:]]*value="\([^"]*\)".*/\1/p' "$conf")
[ -n "$password" ] || { echo "no ESL password in $conf" >&2; exit 1; }
answer=$(fs_cli -p "$password" -x 'module_exists mod_audio_fork')
[ "$(echo "$answer" | tr -d '[:space:]')" = "true" ] || { echo "mod_audio_fork is not loaded: $answer" >&2; exit 1; }
