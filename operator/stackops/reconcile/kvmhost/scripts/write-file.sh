# shellcheck shell=sh
# Writes file $1 atomically, keeping a backup of the previous content: stdin (the content in base64) →
# $1.stackops-new → $1, with the mode and owner of the file it replaces (actions.py WriteFile).
set -e
f="$1"
mkdir -p "$(dirname "$f")"
if [ -f "$f" ]; then cp -p "$f" "$f.stackops-backup"; fi
base64 -d > "$f.stackops-new"
if [ -f "$f" ]; then chmod --reference="$f" "$f.stackops-new"; chown --reference="$f" "$f.stackops-new"; fi
mv -f "$f.stackops-new" "$f"
