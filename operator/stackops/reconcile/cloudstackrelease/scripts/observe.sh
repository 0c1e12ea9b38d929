# shellcheck shell=sh
# OBSERVE WORK SETTINGS KNOWN FILES REPO REF UPSTREAM_REPO UPSTREAM_REF [PR_NUMBER PATCH_URL]…: resolves the inputs
# (base and upstream commits, each patch's SHA-256), computes the inputs hash exactly as inputs.inputs_hash does
# and reports that build's state as tab-separated records (observed.py). BUILDS_DIR comes from inputs.py.
work=$1 settings=$2 known=$3 files=$4 repo=$5 ref=$6 up_repo=$7 up_ref=$8
shift 8
# one record per line: a key and its fields, tab-separated; every value is one line (see observed.py)
rec() { printf '%s' "$1"; shift; for value in "$@"; do printf '\t%s' "$value"; done; printf '\n'; }
first() { head -n 1 "$1" 2>/dev/null | cut -c 1-1000; }
protocols=http:https:ssh:git curl_protocols='=http,https'
if [ "$files" = true ]; then protocols=$protocols:file curl_protocols=$curl_protocols,file; fi
export GIT_ALLOW_PROTOCOL=$protocols
for tool in git curl sha256sum setsid flock; do
    command -v "$tool" >/dev/null 2>&1 || rec missing "$tool"
done
# the build of the inputs status recorded still runs with these settings: its inputs stand (a moved branch or a
# changed patch is seen once it finishes), and nothing is downloaded again while it runs
kdir=$work/$BUILDS_DIR/$known
kpid=$(first "$kdir/pid")
if [ "$known" != - ] && [ "$(cat "$kdir/settings" 2>/dev/null)" = "$settings" ] && [ "$kpid" -gt 0 ] 2>/dev/null \
        && kill -0 "$kpid" 2>/dev/null; then
    rec base "$(sed -n 's/^base=//p' "$kdir/inputs" | head -n 1)"
    rec upstream "$(sed -n 's/^upstream=//p' "$kdir/inputs" | head -n 1)"
    sed -n 's/^pr=//p' "$kdir/inputs" | while read -r number url sum; do rec patch "$number" "$sum"; done
    hash=$known
else
resolve() {  # resolve REPO REF: the commit a branch, tag (peeled) or commit names
    case "$2" in
        [0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]*)
            if [ ${#2} -eq 40 ]; then printf '%s\n' "$2"; return 0; fi ;;
    esac
    out=$(GIT_TERMINAL_PROMPT=0 timeout 120 git ls-remote "$1" "refs/heads/$2" "refs/tags/$2" "refs/tags/$2^{}" 2>&1) || {
        printf '%s\n' "$out" | tail -n 1 | cut -c 1-500; return 1; }
    peeled=$(printf '%s\n' "$out" | awk '$2 ~ /\^\{\}$/ {print $1; exit}')
    head=$(printf '%s\n' "$out" | awk '$2 ~ /^refs\/heads\// {print $1; exit}')
    tag=$(printf '%s\n' "$out" | awk '$2 ~ /^refs\/tags\// {print $1; exit}')
    printf '%s\n' "${peeled:-${head:-$tag}}"
}
base=$(resolve "$repo" "$ref") || { rec fetch-failed base "$base"; exit 0; }
[ -n "$base" ] || { rec ref-missing base "$ref"; exit 0; }
upstream=-
if [ "$up_repo" != - ]; then
    upstream=$(resolve "$up_repo" "$up_ref") || { rec fetch-failed upstream "$upstream"; exit 0; }
    [ -n "$upstream" ] || { rec ref-missing upstream "$up_ref"; exit 0; }
fi
rec base "$base"
rec upstream "$upstream"
hashes=
while [ $# -gt 0 ]; do
    number=$1 url=$2
    shift 2
    sum=$(curl -fsSL --proto "$curl_protocols" --proto-redir =http,https --max-time 120 "$url" | sha256sum \
        | cut -d' ' -f1)
    if [ -z "$sum" ] || [ "$sum" = e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 ]; then
        rec patch-failed "$number" "$url"; exit 0
    fi
    rec patch "$number" "$sum"
    hashes="$hashes $number:$sum"
done
hash=$(printf '%s\n' "$settings" "$base" "$upstream" "$hashes" | sha256sum | cut -d' ' -f1)
fi
rec hash "$hash"
dir=$work/$BUILDS_DIR/$hash
current=$(first "$work/current")
rec current "${current:--}"
if [ -n "$current" ] && [ "$current" != "$hash" ]; then
    old=$(first "$work/$BUILDS_DIR/$current/pid")
    if [ "$old" -gt 0 ] 2>/dev/null && kill -0 "$old" 2>/dev/null; then rec current-running "$old"; fi
fi
[ -d "$dir" ] || { rec state none; exit 0; }
pid=$(first "$dir/pid")
if [ "$pid" -gt 0 ] 2>/dev/null && kill -0 "$pid" 2>/dev/null; then rec running "$pid"; fi
phase=$(first "$dir/phase")
rec phase "${phase:-Pending}"
started=$(first "$dir/started")
rec started "${started:-0}"
finished=$(first "$dir/finished")
rec finished "${finished:-0}"
rec progress "$(tail -n 1 "$dir/progress" 2>/dev/null | cut -c 1-1000)"
rec base_version "$(first "$dir/base_version")"
if [ -f "$dir/failure" ]; then
    first "$dir/failure" | { IFS=' ' read -r reason message; rec failure "$reason" "$message"; }
fi
if [ -f "$dir/result" ]; then
    while IFS= read -r line || [ -n "$line" ]; do printf 'result\t%s\n' "$line"; done < "$dir/result"
fi
if [ -f "$dir/failure" ]; then
    tail -n 20 "$dir/log" 2>/dev/null | cut -c 1-1000 | while IFS= read -r line || [ -n "$line" ]; do
        rec log "$line"
    done
fi
exit 0
