# shellcheck shell=sh
# Confirms checkpoint $1 once its apply has finished (guard.py; run over a connection opened after the change):
# prints `state confirmed|running|reverting|rolled-back|missing`, then `applied N`, `progress N`, `log <base64>`.
# CHECKPOINT_DIR comes from paths.py.
set -u
export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
case ${1:-} in ''|*[!0-9A-Za-z-]*) echo "state missing"; exit 0;; esac
dir=$CHECKPOINT_DIR/$1
if [ ! -d "$dir" ]; then echo "state missing"; exit 0; fi
if [ -e "$dir/confirmed" ]; then state=confirmed
elif [ -e "$dir/rolled-back" ]; then state=rolled-back
elif [ -d "$dir/decided" ]; then state=reverting
elif [ ! -e "$dir/applied" ]; then state=running
elif mkdir "$dir/decided" 2>/dev/null; then : > "$dir/confirmed"; state=confirmed
else state=reverting
fi
echo "state $state"
if [ -e "$dir/applied" ]; then echo "applied $(cat "$dir/applied")"; fi
if [ -e "$dir/progress" ]; then echo "progress $(cat "$dir/progress")"; fi
echo "log $(tail -n 20 "$dir/apply.log" 2>/dev/null | base64 | tr -d '\n')"
