# shellcheck shell=sh
# Enforces AppArmor profile $1 again: its disable/ link removed and the profile loaded. APPARMOR_DIR: paths.py.
rm -f "$APPARMOR_DIR/disable/$1" && apparmor_parser -r "$APPARMOR_DIR/$1"
