# shellcheck shell=sh
# Disables AppArmor profile $1: linked into disable/ (not loaded at boot) and unloaded now. APPARMOR_DIR: paths.py.
ln -sf "$APPARMOR_DIR/$1" "$APPARMOR_DIR/disable/$1" && (apparmor_parser -R "$APPARMOR_DIR/$1" || true)
