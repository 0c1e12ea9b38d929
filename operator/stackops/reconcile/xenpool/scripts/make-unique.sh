# shellcheck shell=sh
# Makes a cloned XenServer host unique (unique.py): $1 the new INSTALLATION_UUID, $2 the new CONTROL_DOMAIN_UUID,
# $3 the host UUID it shares (left alone when the inventory no longer says so). Ignores a hang-up, so an operator
# that dies while it runs does not leave xapi stopped. INVENTORY, STATE_DBS and SERVER_CERTIFICATE: unique.py.
trap '' HUP PIPE
set -eu
test -f "$INVENTORY" || { echo "$INVENTORY is missing: not a XenServer dom0" >&2; exit 2; }
grep -q "^INSTALLATION_UUID='$3'$" "$INVENTORY" || {
    echo "INSTALLATION_UUID is not $3 any more: left alone" >&2; exit 3; }
service xapi stop
sed -i -e "s/^INSTALLATION_UUID=.*/INSTALLATION_UUID='$1'/" \
       -e "s/^CONTROL_DOMAIN_UUID=.*/CONTROL_DOMAIN_UUID='$2'/" "$INVENTORY"
grep -q "^INSTALLATION_UUID='$1'$" "$INVENTORY"
# shellcheck disable=SC2086 # STATE_DBS: the paths of the state DB (one per XenServer version), split on purpose
rm -f $STATE_DBS "$SERVER_CERTIFICATE"
service xapi start
