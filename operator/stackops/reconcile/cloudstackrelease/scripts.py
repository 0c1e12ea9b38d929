"""The shell the CloudStackRelease reconciler runs on the build host (POSIX sh; values arrive as positional
parameters or in an inputs file of `key=value` lines whose values the API's patterns keep free of shell
metacharacters and newlines).

Layout under `builder.workDir`:
- `src/`: the Git work tree (one per work dir; builds take `.lock` with flock, so two never run in parallel);
- `builds/<inputs hash>/`: one directory per set of inputs: `inputs`, `pipeline.sh`, `pid`, `phase`, `log`,
  `progress`, `failure` (`<reason> <message>`), `result` (tab-separated records: `commit <sha>`,
  `pr <n> <commits, space-separated>`, `artifact <name> <sha256> <size> <path>`), `started`, `finished` (epoch
  seconds);
- `current`: the hash of the build started last.

OBSERVE resolves the inputs (base and upstream commits with `git ls-remote`, each patch's SHA-256), computes the
inputs hash exactly as `inputs.inputs_hash` does, and reports that build's state, in one round trip, as
tab-separated records that observed.py parses strictly (a build writes its own state files, so nothing read from
them is trusted to be well-formed). START writes the inputs and the pipeline and launches it detached (`setsid`),
so it outlives the SSH session and the operator: a restarted operator finds it running, or finished, under the
same hash. PIPELINE is the build itself.

Git and curl only speak http(s), ssh and git (`GIT_ALLOW_PROTOCOL`, `curl --proto`; redirects only to http(s)):
`file://` only when the spec sets `allowFileURLs`. Artifact names are plain file names or the build fails
(`ArtifactNameInvalid`); REMOVE refuses any other name.
"""
from __future__ import annotations

OBSERVE = r"""
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
kdir=$work/builds/$known
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
dir=$work/builds/$hash
current=$(first "$work/current")
rec current "${current:--}"
if [ -n "$current" ] && [ "$current" != "$hash" ]; then
    old=$(first "$work/builds/$current/pid")
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
"""

# START WORK HASH SETTINGS KEY=VALUE… : supersede a build of other inputs that still runs, then launch the pipeline.
START = r"""
set -eu
work=$1 hash=$2 settings=$3
shift 3
dir=$work/builds/$hash
mkdir -p "$dir"
previous=$(cat "$work/current" 2>/dev/null || echo -)
if [ "$previous" != "$hash" ] && [ -f "$work/builds/$previous/pid" ]; then
    old=$(cat "$work/builds/$previous/pid")
    if kill -0 "$old" 2>/dev/null; then
        echo "Superseded the inputs changed: superseded by the build of inputs $hash" > "$work/builds/$previous/failure"
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
"""

PIPELINE = r"""#!/bin/sh
# stackops CloudStackRelease pipeline: fetch, sync, patch, version, build, package, publish.
set -u
work=$1 hash=$2
dir=$work/builds/$hash
tree=$work/src
get() { sed -n "s/^$1=//p" "$dir/inputs" | head -n 1; }
getall() { sed -n "s/^$1=//p" "$dir/inputs"; }
phase() { echo "$1" > "$dir/phase"; echo "== $1"; progress "$1"; }
progress() { printf '%s\n' "$*" >> "$dir/progress"; }
clean_tree() {
    [ -d "$tree/.git" ] || return 0
    git -C "$tree" am --abort >/dev/null 2>&1 || true
    git -C "$tree" rebase --abort >/dev/null 2>&1 || true
    git -C "$tree" reset -q --hard >/dev/null 2>&1 || true
    git -C "$tree" clean -qfdx >/dev/null 2>&1 || true
}
fail() {  # fail REASON MESSAGE (a failure already recorded, e.g. Superseded, is kept)
    reason=$1; shift
    [ -f "$dir/failure" ] || printf '%s %s\n' "$reason" "$*" > "$dir/failure"
    echo "!! $reason: $*"
    clean_tree
    date +%s > "$dir/finished"
    echo Failed > "$dir/phase"
    exit 1
}
trap 'fail Interrupted "the build was stopped by a signal"' TERM INT HUP
exec 9> "$work/.lock"
flock -n 9 || { echo "waiting for another build to release $work/.lock"; flock 9; }
export GIT_TERMINAL_PROMPT=0 GIT_AUTHOR_NAME=stackops GIT_AUTHOR_EMAIL=stackops@localhost \
       GIT_COMMITTER_NAME=stackops GIT_COMMITTER_EMAIL=stackops@localhost GIT_ALLOW_PROTOCOL=http:https:ssh:git
curl_protocols='=http,https'
if [ "$(get files)" = true ]; then GIT_ALLOW_PROTOCOL=$GIT_ALLOW_PROTOCOL:file curl_protocols=$curl_protocols,file; fi

phase Fetching
repo=$(get repo) base=$(get base)
if [ ! -d "$tree/.git" ]; then
    rm -rf "$tree"
    git clone -q --no-checkout "$repo" "$tree" || fail FetchFailed "git clone $repo failed"
fi
clean_tree
git -C "$tree" remote set-url origin "$repo"
git -C "$tree" fetch -q --tags origin || fail FetchFailed "git fetch $repo failed"
git -C "$tree" cat-file -e "$base^{commit}" 2>/dev/null || \
    git -C "$tree" fetch -q origin "$base" 2>/dev/null || fail FetchFailed "commit $base is not in $repo"
git -C "$tree" checkout -q -f -B stackops-build "$base" || fail FetchFailed "cannot check out $base"
pom_version() {  # the project version of the root POM (outside its <parent> block)
    awk '/<parent>/{p=1} /<\/parent>/{p=0; next} !p && /<version>/ {
        sub(/.*<version>/, ""); sub(/<\/version>.*/, ""); print; exit }' "$tree/pom.xml"
}
base_version=$(pom_version)
echo "base version $base_version"
echo "$base_version" > "$dir/base_version"
version=$(get version) rule=$(get rule) allow=$(get allow_schema_upgrade)
short() { printf '%s\n' "${1%%-*}" | cut -d. -f1-3; }
if [ "$rule" = Legacy ] && [ "$(short "$version")" != "$(short "$base_version")" ] && [ "$allow" != true ]; then
    fail SchemaUpgradeRequired "version $version does not keep the first three parts of the base version \
$base_version: CloudStack would need a database upgrade path (set allowSchemaUpgrade to build anyway)"
fi

upstream=$(get upstream)
if [ "$upstream" != - ]; then
    phase Syncing
    git -C "$tree" fetch -q "$(get upstream_repo)" "$upstream" 2>/dev/null || \
        git -C "$tree" fetch -q "$(get upstream_repo)" || fail FetchFailed "git fetch $(get upstream_repo) failed"
    git -C "$tree" rebase -q "$upstream" || fail RebaseConflict "rebasing $base onto upstream $upstream conflicts"
fi

getall pr > "$dir/prs"
count=$(wc -l < "$dir/prs")
if [ "$count" -gt 0 ]; then phase Patching; fi
index=0
: > "$dir/applied"
while read -r number url sum; do
    index=$((index + 1))
    progress "applying pull request $index of $count (#$number)"
    patch=$dir/pr-$number.patch
    curl -fsSL --proto "$curl_protocols" --proto-redir =http,https --max-time 300 "$url" -o "$patch" || \
        fail PatchDownloadFailed "pull request #$number: $url"
    got=$(sha256sum "$patch" | cut -d' ' -f1)
    [ "$got" = "$sum" ] || fail PatchChanged "pull request #$number changed since it was looked at; trying again"
    before=$(git -C "$tree" rev-parse HEAD)
    git -C "$tree" am -q -s "$patch" || fail PatchDoesNotApply "pull request #$number does not apply on top of \
$(git -C "$tree" log -1 --format='%h %s' "$before")"
    message=$(git -C "$tree" log -1 --format=%B)
    git -C "$tree" commit -q --amend -m "$message

This closes #$number" || fail PatchDoesNotApply "pull request #$number: amending its message failed"
    commits=$(git -C "$tree" rev-list --reverse "$before..HEAD" | tr '\n' ' ')
    printf 'pr\t%s\t%s\n' "$number" "${commits% }" >> "$dir/applied"
done < "$dir/prs"

phase Versioning
cd "$tree"
$(get version_command) || fail VersionFailed "setting version $version failed"
[ "$(pom_version)" = "$version" ] || fail VersionFailed "the root POM says $(pom_version) after setting $version"

phase Building
timeout "$(get timeout_seconds)" $(get maven) || fail BuildFailed "the build failed (exit $?)"

rpms=$tree/dist/rpmbuild/RPMS
: > "$dir/artifacts"
if [ "$(get packaging)" = true ]; then
    phase Packaging
    rm -rf "$tree/dist"
    (cd "$tree/packaging" && ./package.sh -d "$(get distribution)") || fail PackagingFailed "package.sh failed"
    # the RPMs' file names, each checked to be a plain name before anything is joined to the publish directory
    find "$rpms" -name '*.rpm' -type f -exec basename {} \; 2>/dev/null | sort > "$dir/artifacts"
    [ "$(find "$rpms" -name '*.rpm' -type f 2>/dev/null | wc -l)" -eq "$(wc -l < "$dir/artifacts")" ] || \
        fail ArtifactNameInvalid "an RPM under dist/rpmbuild/RPMS has a line break in its name"
    while IFS= read -r name; do
        case $name in
            .*|*[!A-Za-z0-9._+~^-]*) fail ArtifactNameInvalid "the RPM file name '$name' is not a plain file name \
(letters, digits and ._+~^-, no leading dot)" ;;
        esac
        [ "$(find "$rpms" -name "$name" -type f | wc -l)" -eq 1 ] || fail ArtifactNameInvalid "two RPMs are named $name"
    done < "$dir/artifacts"
    [ -s "$dir/artifacts" ] || fail PackagingFailed "package.sh made no RPM under dist/rpmbuild/RPMS"
fi

phase Publishing
publish=$(get publish)
mkdir -p "$publish" || fail PublishFailed "cannot create $publish"
: > "$dir/result.tmp"
printf 'commit\t%s\n' "$(git -C "$tree" rev-parse HEAD)" >> "$dir/result.tmp"
cat "$dir/applied" >> "$dir/result.tmp"
while IFS= read -r name; do
    file=$(find "$rpms" -name "$name" -type f)
    cp -f "$file" "$publish/$name.tmp" && mv -f "$publish/$name.tmp" "$publish/$name" || fail PublishFailed "copying $name"
    printf 'artifact\t%s\t%s\t%s\t%s\n' "$name" "$(sha256sum "$publish/$name" | cut -d' ' -f1)" \
        "$(wc -c < "$publish/$name" | tr -d ' ')" "$publish/$name" >> "$dir/result.tmp"
done < "$dir/artifacts"
if [ -s "$dir/artifacts" ]; then
    command -v createrepo_c >/dev/null 2>&1 || fail PublishFailed "createrepo_c is not installed"
    createrepo_c -q --update "$publish" || fail PublishFailed "createrepo_c $publish failed"
fi
mv "$dir/result.tmp" "$dir/result"
date +%s > "$dir/finished"
echo Succeeded > "$dir/phase"
echo "== Succeeded"
"""

# REMOVE WORK PUBLISH NAME…: deletionPolicy Delete — the published packages, the repository metadata, the tree.
REMOVE = r"""
set -eu
work=$1 publish=$2
shift 2
for name in "$@"; do
    case $name in .*|*/*|'') echo "refusing to remove '$name': not a plain file name" >&2; exit 3 ;; esac
done
for name in "$@"; do rm -f "$publish/$name"; done
if [ -d "$publish/repodata" ]; then
    if ls "$publish"/*.rpm >/dev/null 2>&1; then createrepo_c -q --update "$publish"; else rm -rf "$publish/repodata"; fi
fi
current=$(cat "$work/current" 2>/dev/null || echo -)
pid=$(cat "$work/builds/$current/pid" 2>/dev/null || echo 0)
if [ "$pid" -gt 0 ] 2>/dev/null && kill -0 "$pid" 2>/dev/null; then kill -TERM -- "-$pid" 2>/dev/null || true; fi
rm -rf "$work/src" "$work/builds" "$work/current" "$work/.lock"
"""


def start_script() -> str:
    return START.replace("@PIPELINE@", PIPELINE.strip("\n"))
