# shellcheck shell=sh
# Guarded apply (guard.py), one round trip: clean up, checkpoint, start the revert timer (guard-revert.sh, which
# guard.py puts into the heredoc below), start the apply (its script on stdin), wait a moment.
# `sh -c START stackops-checkpoint ID TIMEOUT WAIT GENERATION OWNER DIGEST CHANGES IFACE…`.
# Exit 3: no checkpoint or no timer, so nothing was changed. CHECKPOINT_DIR comes from paths.py.
set -u
umask 077
export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
id=$1 timeout=$2 wait=$3 generation=$4 owner=$5 digest=$6 changes=$7
shift 7
case $id in ''|*[!0-9A-Za-z-]*) echo "invalid checkpoint id" >&2; exit 3;; esac
for tool in ovsdb-client ip setsid awk sed base64; do
  command -v "$tool" >/dev/null 2>&1 || { echo "$tool not found on the host" >&2; exit 3; }
done
base=$CHECKPOINT_DIR
retention_days=7  # finished checkpoints of other (maybe deleted) objects are removed after this long
dir=$base/$id
mkdir -p "$base" || exit 3
machine=$(cat /etc/machine-id 2>/dev/null || true)
now=$(date +%s)
for old in "$base"/*/; do  # finished checkpoints: this object's, and anyone's after $retention_days days
  old=${old%/}
  [ -d "$old" ] || continue
  [ "$(cat "$old/machine-id" 2>/dev/null || true)" = "$machine" ] || continue
  if [ -e "$old/confirmed" ] || [ -e "$old/rolled-back" ]; then :
  elif [ ! -d "$old/decided" ] && [ "$(cat "$old/expires" 2>/dev/null || echo 0)" -lt "$((now - 30))" ]; then :
  else continue
  fi
  if [ "$(cat "$old/owner" 2>/dev/null || true)" = "$owner" ] \
      || [ -n "$(find "$old" -maxdepth 0 -mtime +"$retention_days" 2>/dev/null)" ]; then
    rm -rf "$old"
  fi
done
mkdir "$dir" || exit 3
printf '%s\n' "$machine" > "$dir/machine-id"
if ! ovsdb-client backup > "$dir/ovsdb.backup" 2> "$dir/checkpoint.log"; then
  echo "ovsdb-client backup failed: $(tail -n 3 "$dir/checkpoint.log")" >&2
  rm -rf "$dir"
  exit 3
fi
ip -j addr show > "$dir/ip-addr.json" 2>/dev/null
ip -j -4 route show > "$dir/ip-route.json" 2>/dev/null
for i in "$@"; do
  link=$(ip -o link show dev "$i" 2>/dev/null) || continue
  printf '%s\n' "$link" | awk -v i="$i" '{ up = ($3 ~ /[<,]UP[,>]/) ? "up" : "down"; mtu = ""
    for (n = 1; n < NF; n++) if ($n == "mtu") mtu = $(n + 1)
    print "link", i, mtu, up }'
  ip -4 -o addr show dev "$i" | awk -v i="$i" '{ print "addr", i, $4 }'
  # the flags `ip route show` prints that `ip route replace` does not take
  ip -4 route show dev "$i" \
    | sed -E 's/ (linkdown|dead|offload|trap|rt_offload|rt_trap|rt_offload_failed|pervasive)( |$)/ /g; s/ +$//' \
    | awk -v i="$i" 'NF { print "route", i, $0 }'
done > "$dir/network"
printf '%s\n' "$owner" > "$dir/owner"
printf '%s\n' "$generation" > "$dir/generation"
printf '%s\n' "$digest" > "$dir/digest"
printf '%s\n' "$changes" > "$dir/changes"
cat > "$dir/apply.sh"
cat > "$dir/revert.sh" <<'STACKOPS_REVERT'
@REVERT@
STACKOPS_REVERT
started=$(date +%s)
printf '%s\n' "$started" > "$dir/started"
printf '%s\n' "$((started + timeout))" > "$dir/expires"
setsid sh "$dir/revert.sh" "$dir" "$timeout" </dev/null >>"$dir/revert.log" 2>&1 &
timer=$!
echo "$timer" > "$dir/timer.pid"
if ! kill -0 "$timer" 2>/dev/null; then  # never apply without a running timer
  echo "the revert timer did not start: $(tail -n 3 "$dir/revert.log")" >&2
  rm -rf "$dir"
  exit 3
fi
# shellcheck disable=SC2016 # $1 is expanded by that sh (the checkpoint: stackops-apply's argument)
setsid sh -c 'sh "$1/apply.sh" "$1"; echo "$?" > "$1/applied.new"; mv -f "$1/applied.new" "$1/applied"' \
  stackops-apply "$dir" </dev/null >>"$dir/apply.log" 2>&1 &
echo "$!" > "$dir/apply.pid"
n=0
while [ ! -e "$dir/applied" ] && [ "$n" -lt "$((wait * 10))" ]; do
  sleep 0.1 2>/dev/null || sleep 1
  n=$((n + 1))
done
if [ -e "$dir/applied" ]; then echo "applied $(cat "$dir/applied")"; else echo running; fi
