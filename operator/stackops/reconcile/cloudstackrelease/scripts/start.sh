# shellcheck shell=sh
# START WORK HASH SETTINGS KEY=VALUE…: supersede a build of other inputs that still runs, then launch the pipeline
# (pipeline.sh, which scripts.py puts into the heredoc below) detached. BUILDS_DIR comes from inputs.py.
set -eu
work=$1 hash=$2 settings=$3
shift 3
dir=$work/$BUILDS_DIR/$hash
mkdir -p "$dir"
previous=$(cat "$work/current" 2>/dev/null || echo -)
if [ "$previous" != "$hash" ] && [ -f "$work/$BUILDS_DIR/$previous/pid" ]; then
    old=$(cat "$work/$BUILDS_DIR/$previous/pid")
    if kill -0 "$old" 2>/dev/null; then
        echo "Superseded the inputs changed: superseded by the build of inputs $hash" > "$work/$BUILDS_DIR/$previous/failure"
        kill -TERM -- "-$old" 2>/dev/null || kill -TERM "$old" 2>/dev/null || true
        echo "superseded $previous"
    fi
fi
pid=$(cat "$dir/pid" 2>/dev/null || echo 0)
if [ "$pid" -gt 0 ] 2>/dev/null && kill -0 "$pid" 2>/dev/null; then echo "running $pid"; exit 0; fi
rm -f "$dir/failure" "$dir/result" "$dir/finished" "$dir/phase" "$dir/progress"
: > "$dir/inputs.tmp"
for pair in "$@"; do printf '%s\n' "$pair" >> "$dir/inputs.tmp"; done
mv "$dir/inputs.tmp" "$dir/inputs"
printf '%s\n' "$settings" > "$dir/settings"
cat > "$dir/pipeline.sh" <<'PIPELINE'
@PIPELINE@
PIPELINE
echo "$hash" > "$work/current"
date +%s > "$dir/started"
echo Pending > "$dir/phase"
setsid sh "$dir/pipeline.sh" "$work" "$hash" > "$dir/log" 2>&1 < /dev/null &
echo $! > "$dir/pid"
echo "started $!"
