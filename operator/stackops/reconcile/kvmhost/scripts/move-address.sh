# shellcheck shell=sh
# Moves address $1 (a CIDR) from NIC $2, now a bridge port, to interface $3 of that bridge, with the NIC's other
# routes (the default route, …), leaving out the flags `ip route show` prints that `ip route replace` does not take.
set -eu
set -f
cidr="$1"; from="$2"; to="$3"
routes=$(ip -4 route show dev "$from" | grep -v " proto kernel " \
  | sed -E "s/ (linkdown|dead|offload|trap|rt_offload|rt_trap|rt_offload_failed|pervasive)( |\$)/ /g")
ip link set dev "$to" up
ip addr replace "$cidr" dev "$to"
ip addr del "$cidr" dev "$from"
printf "%s\n" "$routes" | while IFS= read -r route; do
  [ -n "$route" ] || continue
  # shellcheck disable=SC2086 # $route is the words of one route as `ip route show` printed them
  ip route replace $route dev "$to"
done
if command -v arping >/dev/null 2>&1; then arping -q -U -c 1 -I "$to" "${cidr%/*}" || true; fi
