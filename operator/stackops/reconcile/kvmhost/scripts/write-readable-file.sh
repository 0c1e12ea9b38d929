# shellcheck shell=sh
# write-file-no-backup.sh, world-readable whatever root's umask: apt reads a repository's keyring as its
# unprivileged `_apt` user (a key file it cannot read is ignored, and the repository's signature then fails).
set -e
f="$1"
mkdir -p "$(dirname "$f")"
base64 -d > "$f.stackops-new"
if [ -f "$f" ]; then chmod --reference="$f" "$f.stackops-new"; chown --reference="$f" "$f.stackops-new"; fi
chmod 0644 "$f.stackops-new"; mv -f "$f.stackops-new" "$f"
