# shellcheck shell=sh
# stackops: restores this checkpoint unless the operator confirms it within $2 seconds
set -u
export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
dir=$1 timeout=$2
n=0
while [ "$n" -lt "$timeout" ]; do
  [ -d "$dir" ] || exit 0
  [ -e "$dir/confirmed" ] && exit 0
  sleep 1
  n=$((n + 1))
done
mkdir "$dir/decided" 2>/dev/null || exit 0  # the operator confirmed first
fail() { printf '%s\n' "$*" >> "$dir/revert.errors"; }
if [ ! -e "$dir/applied" ] && [ -s "$dir/apply.pid" ]; then  # the change is still being applied: stop it
  pid=$(cat "$dir/apply.pid")
  kill -s TERM -- "-$pid" 2>/dev/null
  sleep 1
  kill -s KILL -- "-$pid" 2>/dev/null
fi
ovsdb-client restore < "$dir/ovsdb.backup" || fail "ovsdb-client restore failed"
sleep 1  # ovs-vswitchd reconfigures from the restored database: bridges and ports of the change go away
exists() { ip link show dev "$1" >/dev/null 2>&1 </dev/null; }
set -f
while read -r kind name value rest; do
  [ "$kind" = link ] || continue
  if [ -n "$value" ]; then ip link set dev "$name" mtu "$value" </dev/null || fail "MTU $value on $name"; fi
  ip link set dev "$name" "$rest" </dev/null || fail "link $name $rest"
done < "$dir/network"
awk '$1 == "link" { print $2 }' "$dir/network" | while read -r name; do
  for cidr in $(ip -4 -o addr show dev "$name" 2>/dev/null </dev/null | awk '{ print $4 }'); do
    grep -qxF "addr $name $cidr" "$dir/network" || ip addr del "$cidr" dev "$name" </dev/null \
      || fail "remove $cidr from $name"
  done
done
while read -r kind name cidr rest; do
  [ "$kind" = addr ] || continue
  for other in $(ip -4 -o addr show </dev/null | awk -v ip="${cidr%/*}" -v keep="$name" \
      '{ sub(/@.*/, "", $2); split($4, a, "/"); if (a[1] == ip && $2 != keep) print $2 "=" $4 }'); do
    ip addr del "${other#*=}" dev "${other%%=*}" </dev/null || ! exists "${other%%=*}" \
      || fail "remove ${other#*=} from ${other%%=*}"
  done
  ip addr replace "$cidr" dev "$name" </dev/null || fail "address $cidr on $name"
  if command -v arping >/dev/null 2>&1; then arping -q -U -c 1 -I "$name" "${cidr%/*}" </dev/null || true; fi
done < "$dir/network"
while read -r kind name route; do
  [ "$kind" = route ] || continue
  # shellcheck disable=SC2086 # $route is the words of one route as `ip route show` printed them
  ip route replace $route dev "$name" </dev/null || fail "route $route dev $name"
done < "$dir/network"
names=$(awk '$1 == "link" { printf "%s%s", sep, $2; sep = ", " }' "$dir/network")
reason="no confirmation from the operator within ${timeout}s, so the host restored the Open vSwitch database and \
the links, addresses and routes of ${names:-no interface} as they were before the change"
if [ -s "$dir/revert.errors" ]; then reason="$reason, with errors: $(tr '\n' ';' < "$dir/revert.errors")"; fi
{ printf 'time %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"; printf 'reason %s\n' "$reason"; } > "$dir/rolled-back.new"
mv -f "$dir/rolled-back.new" "$dir/rolled-back"
