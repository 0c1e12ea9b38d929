#!/bin/sh
# stackops CloudStackRelease pipeline: fetch, sync, patch, version, build, package, publish.
# pipeline.sh WORK HASH, started by start.sh; BUILDS_DIR and SOURCE_DIR come from inputs.py.
set -u
work=$1 hash=$2
dir=$work/$BUILDS_DIR/$hash
tree=$work/$SOURCE_DIR
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
cd "$tree" || fail FetchFailed "cannot enter the work tree $tree"
# shellcheck disable=SC2091 # versionCommand's words (api CommandWord: no blank, quote or glob character)
$(get version_command) || fail VersionFailed "setting version $version failed"
[ "$(pom_version)" = "$version" ] || fail VersionFailed "the root POM says $(pom_version) after setting $version"

phase Building
# shellcheck disable=SC2046 # the Maven command's words (api CommandWord: no blank, quote or glob character)
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
    { cp -f "$file" "$publish/$name.tmp" && mv -f "$publish/$name.tmp" "$publish/$name"; } \
        || fail PublishFailed "copying $name"
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
