# shellcheck shell=sh
# The probe's last section (after probe.sh, whose `section` it uses): this machine's checkpoints of guarded
# changes (guard.py), one line each, values base64 (guard.parse_checkpoints). CHECKPOINT_DIR comes from paths.py.
section checkpoints -
if [ -d "$CHECKPOINT_DIR" ]; then
  machine=$(cat /etc/machine-id 2>/dev/null || true)
  printf 'now %s\n' "$(date +%s)"
  for d in "$CHECKPOINT_DIR"/*/; do
    d=${d%/}
    [ -d "$d" ] || continue
    [ "$(cat "$d/machine-id" 2>/dev/null || true)" = "$machine" ] || continue
    printf 'checkpoint %s' "${d##*/}"
    for f in owner generation digest changes started expires applied progress rolled-back; do
      if [ -f "$d/$f" ]; then printf ' %s=%s' "$f" "$(base64 < "$d/$f" | tr -d '\n')"; fi
    done
    if [ -e "$d/confirmed" ]; then printf ' confirmed='; fi
    if [ -d "$d/decided" ]; then printf ' decided='; fi
    printf '\n'
  done
fi
