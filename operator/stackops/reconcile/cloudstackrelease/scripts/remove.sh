# shellcheck shell=sh
# REMOVE WORK PUBLISH NAME…: deletionPolicy Delete — the published packages, the repository metadata, the work
# tree. BUILDS_DIR and SOURCE_DIR come from inputs.py.
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
pid=$(cat "$work/$BUILDS_DIR/$current/pid" 2>/dev/null || echo 0)
if [ "$pid" -gt 0 ] 2>/dev/null && kill -0 "$pid" 2>/dev/null; then kill -TERM -- "-$pid" 2>/dev/null || true; fi
rm -rf "${work:?}/${SOURCE_DIR:?}" "$work/${BUILDS_DIR:?}" "$work/current" "$work/.lock"
