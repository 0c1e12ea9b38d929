# shellcheck shell=sh
# Writes file $1 that only root (or Open vSwitch's user) may read, atomically: created with mode 0600 from the first
# byte (umask 077), given the owner of $2 when that exists (the user a daemon reading it runs as), then moved over
# $1. No backup: a copy of an old private key is not left behind. stdin is the content in base64.
set -e
umask 077
f="$1"
mkdir -p "$(dirname "$f")"
base64 -d > "$f.stackops-new"
chmod 0600 "$f.stackops-new"
if [ -n "$2" ] && [ -e "$2" ]; then chown --reference="$2" "$f.stackops-new"; fi
mv -f "$f.stackops-new" "$f"
