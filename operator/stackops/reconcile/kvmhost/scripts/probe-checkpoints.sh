# shellcheck shell=sh
# The probe's checkpoints section (in probe.sh, whose `section` it uses): this machine's checkpoints of guarded
# changes (guard.py), one line each: `checkpoint <id>`, then ` confirmed=` / ` decided=` when so. Their files
# (owner, generation, …) join the files the probe reads in one pass ($dump, relative to /); guard.parse_checkpoints
# reads them from there. No process but `date`. CHECKPOINT_DIR comes from paths.py, CHECKPOINT_FILES from guard.py.
section checkpoints -
if [ -d "$CHECKPOINT_DIR" ]; then
  machine=
  if [ -r /etc/machine-id ]; then read -r machine < /etc/machine-id; fi
  printf 'now %s\n' "${now:=$(date +%s)}"
  for d in "$CHECKPOINT_DIR"/*/; do
    d=${d%/}
    case ${d##*/} in ''|*[!0-9A-Za-z-]*) continue ;; esac
    [ -d "$d" ] || continue
    mine=
    if [ -r "$d/machine-id" ]; then read -r mine < "$d/machine-id"; fi
    [ "$mine" = "$machine" ] || continue
    printf 'checkpoint %s' "${d##*/}"
    for f in $CHECKPOINT_FILES; do
      if [ -f "$d/$f" ]; then dump="${dump-} ${d#/}/$f"; fi
    done
    if [ -e "$d/confirmed" ]; then printf ' confirmed='; fi
    if [ -d "$d/decided" ]; then printf ' decided='; fi
    printf '\n'
  done
fi
