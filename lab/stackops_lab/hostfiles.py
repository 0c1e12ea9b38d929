"""Files the lab writes into its KVM hosts: the `systemctl`/`service` shims and the cloudstack-agent stand-ins.

The shims are what a lab host has instead of systemd: `systemctl start|stop|restart|status|is-active …` for the
daemons a CloudStack KVM host runs (libvirtd, Open vSwitch, sshd) start, stop and report the real daemons, so a
restart re-reads their configuration as on a real host. cloudstack-agent is not packaged in Debian: its unit is a
stand-in that only records that it runs (and which agent.properties it "loaded"), and a unit only while the
package is installed (a lab host may start without it and install it from the lab's repository, aptrepo.py).
A host standing in a XenServer dom0 (xenapi/dom0.py) also has an `xapi` unit: `stackops-lab-xapi` (XAPI_CONTROL)
asks the lab's XenAPI simulator to stop or start that host's xapi.
"""

from __future__ import annotations

SYSTEMCTL = r"""#!/bin/sh
# systemctl for a stackops lab host (there is no systemd in a lab host): it starts, stops and reports the
# host's real daemons the way systemd would, with systemctl's exit codes (is-active/status: 0 active,
# 3 inactive; unknown unit: status 4, start 5).
#   units: ssh (sshd), libvirtd, openvswitch-switch (ovsdb-server + ovs-vswitchd, also answering to those two
#   names), cloudstack-agent (stand-in; a unit only while its package is installed, as its unit file comes with it),
#   libvirtd*.socket (socket activation is not emulated: they can be masked/stopped, never started),
#   xapi (a XenServer dom0 stand-in's: a unit only while /etc/stackops-lab/xapi-control exists; stackops-lab-xapi
#   asks the lab's XenAPI simulator to stop/start this host's xapi).
# Enabled/disabled/masked states are kept in /etc (they survive a reboot, as systemd's symlinks do); running and
# failed states in /run (they do not).
# Also `systemctl reboot|poweroff|halt` and, as systemd's multi-call binary, `reboot`, `shutdown [-r|-h|-P|-H]
# [now|+M|M] [-c]`, `poweroff`, `halt` (the host's /usr/sbin/reboot… link to systemctl; the lab also puts them in
# /usr/local/sbin): they send the host's init (hostinit.py, PID 1) systemd's signal for it, SIGRTMIN+5 reboot,
# +4 poweroff, +3 halt, and return; the init stops the services and every process, SSH sessions included.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
STATE=/run/stackops-systemctl
UNITS=/etc/stackops-lab/systemd

# power KIND: ask the host's init for a reboot, poweroff or halt (never another init than a lab host's)
power() {
    case "$1" in reboot) sig=5 ;; poweroff) sig=4 ;; *) sig=3 ;; esac
    if ! tr '\0' ' ' </proc/1/cmdline 2>/dev/null | grep -q 'hostinit\.py'; then
        echo "$1: PID 1 is not a stackops lab host's init: refusing" >&2
        exit 1
    fi
    if [ -r "$STATE/shutdown.pid" ]; then  # a scheduled shutdown: this one replaces it (or is it)
        [ "$(cat "$STATE/shutdown.pid")" = "$$" ] || kill -- "-$(cat "$STATE/shutdown.pid")" 2>/dev/null
        rm -f "$STATE/shutdown.pid"
    fi
    kill -s "$(( $(kill -l RTMIN 2>/dev/null || echo 34) + sig ))" 1
}

# shutdown [-r|-h|-P|-H|-c|-k] [TIME] [WALL…]: TIME now, +0 or none (+1 as systemd) … scheduled in minutes
shutdown_command() {
    kind=poweroff; when=+1; cancel=0
    while [ $# -gt 0 ]; do
        case "$1" in
            -r|--reboot) kind=reboot ;;
            -h|-P|--poweroff) kind=poweroff ;;
            -H|--halt) kind=halt ;;
            -c) cancel=1 ;;
            --no-wall|-k|-f|-F|-n) ;;
            now) when=+0 ;;
            +[0-9]*|[0-9]*) when=$1 ;;
            -*) err "shutdown: option $1 is not supported by the stackops lab shim"; exit 1 ;;
            *) break ;;
        esac
        shift
    done
    if [ "$cancel" = 1 ]; then
        [ -r "$STATE/shutdown.pid" ] && kill -- "-$(cat "$STATE/shutdown.pid")" 2>/dev/null
        rm -f "$STATE/shutdown.pid"
        exit 0
    fi
    minutes=${when#+}
    case "$minutes" in *[!0-9]*) err "shutdown: time $when is not supported by the stackops lab shim"; exit 1 ;; esac
    [ "$minutes" -eq 0 ] && { power "$kind"; exit 0; }
    mkdir -p "$STATE"
    setsid sh -c "sleep $((minutes * 60)); exec systemctl $kind" </dev/null >/dev/null 2>&1 &
    echo $! >"$STATE/shutdown.pid"
    echo "Shutdown scheduled for $(date -d "+$minutes min" '+%a %F %T %Z'), use 'shutdown -c' to cancel."
    exit 0
}

err() { echo "$@" >&2; }
case "${0##*/}" in
    reboot|poweroff|halt) power "${0##*/}"; exit 0 ;;
    shutdown) shutdown_command "$@" ;;
esac
mkdir -p "$STATE"

say() { [ "$quiet" = 1 ] || echo "$@"; }
err() { echo "$@" >&2; }

canon() {
    u=${1%.service}
    case "$u" in
        ssh|sshd) echo ssh ;;
        libvirtd|libvirt-bin) echo libvirtd ;;
        openvswitch-switch|ovs-vswitchd|ovsdb-server) echo openvswitch-switch ;;
        cloudstack-agent) agent_installed || return 1; echo cloudstack-agent ;;
        xapi) [ -r /etc/stackops-lab/xapi-control ] || return 1; echo xapi ;;
        libvirtd.socket|libvirtd-ro.socket|libvirtd-admin.socket|libvirtd-tcp.socket|libvirtd-tls.socket|\
virtlogd.socket|virtlogd-admin.socket|virtlockd.socket|virtlockd-admin.socket) echo "$u" ;;
        *) return 1 ;;
    esac
}

agent_installed() { [ "$(dpkg-query -W -f='${db:Status-Status}' cloudstack-agent 2>/dev/null)" = installed ]; }

unit_file() { case "$1" in *.socket) echo "$1" ;; *) echo "$1.service" ;; esac; }

describe() {
    case "$1" in
        ssh) echo "OpenBSD Secure Shell server" ;;
        libvirtd) echo "Virtualization daemon" ;;
        openvswitch-switch) echo "Open vSwitch" ;;
        cloudstack-agent) echo "CloudStack Agent" ;;
        xapi) echo "XenAPI server (XAPI)" ;;
        *) echo "Libvirt socket ($1)" ;;
    esac
}

# pid_of PIDFILE COMM: the pid in PIDFILE if that process runs and is COMM
pid_of() {
    [ -r "$1" ] || return 1
    p=$(cat "$1" 2>/dev/null) || return 1
    case "$p" in ''|*[!0-9]*) return 1 ;; esac
    [ "$(cat /proc/"$p"/comm 2>/dev/null)" = "$2" ] || return 1
    echo "$p"
}

# stop_pid PID NAME [SECONDS]: SIGTERM, wait, SIGKILL
stop_pid() {
    kill -TERM "$1" 2>/dev/null || return 0
    n=0
    limit=$(( ${3:-20} * 10 ))
    while kill -0 "$1" 2>/dev/null; do
        [ "$(cat /proc/"$1"/stat 2>/dev/null | sed 's/.*) \(.\).*/\1/')" = Z ] && return 0
        n=$((n + 1))
        if [ "$n" -ge "$limit" ]; then
            kill -KILL "$1" 2>/dev/null
            sleep 0.2
            return 0
        fi
        sleep 0.1
    done
}

# ------------------------------------------------------------------ ssh
ssh_pid() { pid_of /run/sshd.pid sshd; }
ssh_start() {
    SSHD_OPTS=
    [ -r /etc/default/ssh ] && . /etc/default/ssh
    mkdir -p /run/sshd && chmod 0755 /run/sshd
    /usr/sbin/sshd -t $SSHD_OPTS || return 1
    /usr/sbin/sshd $SSHD_OPTS -E /var/log/auth.log
}
ssh_stop() { p=$(ssh_pid) && stop_pid "$p" sshd; return 0; }
ssh_reload() { p=$(ssh_pid) && /usr/sbin/sshd -t && kill -HUP "$p"; }

# ------------------------------------------------------------------ libvirtd
libvirtd_pid() { pid_of /run/libvirtd.pid libvirtd; }
libvirtd_start() {
    LIBVIRTD_ARGS=
    [ -r /etc/default/libvirtd ] && . /etc/default/libvirtd
    mkdir -p /var/log/libvirt
    log=/var/log/libvirt/libvirtd.log
    echo "---- $(date '+%F %T') systemctl start libvirtd: /usr/sbin/libvirtd $LIBVIRTD_ARGS" >>"$log"
    setsid /usr/sbin/libvirtd $LIBVIRTD_ARGS </dev/null >>"$log" 2>&1 &
    child=$!
    n=0
    while [ "$n" -lt 300 ]; do
        if ! kill -0 "$child" 2>/dev/null || [ "$(sed 's/.*) \(.\).*/\1/' /proc/"$child"/stat 2>/dev/null)" = Z ]; then
            err "libvirtd exited during start-up; last lines of $log:"
            tail -n 5 "$log" >&2
            return 1
        fi
        [ "$(cat /run/libvirtd.pid 2>/dev/null)" = "$child" ] && [ -S /run/libvirt/libvirt-sock ] && return 0
        n=$((n + 1))
        sleep 0.1
    done
    err "libvirtd did not open /run/libvirt/libvirt-sock in 30s"
    return 1
}
libvirtd_stop() { p=$(libvirtd_pid) && stop_pid "$p" libvirtd 30; rm -f /run/libvirtd.pid; return 0; }
libvirtd_reload() { p=$(libvirtd_pid) && kill -HUP "$p"; }

# ------------------------------------------------------------------ Open vSwitch (userspace datapath)
OVS_DB=/etc/openvswitch/conf.db
OVS_SCHEMA=/usr/share/openvswitch/vswitch.ovsschema
OVS_RUN=/run/openvswitch
OVS_LOG=/var/log/openvswitch
ovsdb_pid() { pid_of $OVS_RUN/ovsdb-server.pid ovsdb-server; }
vswitchd_pid() { pid_of $OVS_RUN/ovs-vswitchd.pid ovs-vswitchd; }
openvswitch_switch_pid() { p=$(vswitchd_pid) && ovsdb_pid >/dev/null && echo "$p"; }
openvswitch_switch_start() {
    mkdir -p $OVS_RUN $OVS_LOG
    if ! ovsdb_pid >/dev/null; then
        if [ ! -s $OVS_DB ]; then
            ovsdb-tool create $OVS_DB $OVS_SCHEMA || return 1
        elif [ "$(ovsdb-tool needs-conversion $OVS_DB $OVS_SCHEMA)" = yes ]; then
            ovsdb-tool convert $OVS_DB $OVS_SCHEMA || return 1
        fi
        ovsdb-server $OVS_DB -vconsole:emer -vsyslog:err -vfile:info \
            --remote=punix:$OVS_RUN/db.sock \
            --remote=db:Open_vSwitch,Open_vSwitch,manager_options \
            --private-key=db:Open_vSwitch,SSL,private_key \
            --certificate=db:Open_vSwitch,SSL,certificate \
            --bootstrap-ca-cert=db:Open_vSwitch,SSL,ca_cert \
            --no-chdir --log-file=$OVS_LOG/ovsdb-server.log --pidfile=$OVS_RUN/ovsdb-server.pid --detach \
            || return 1
        [ -s /etc/openvswitch/system-id.conf ] || cat /proc/sys/kernel/random/uuid >/etc/openvswitch/system-id.conf
        . /etc/os-release
        ovs-vsctl --no-wait -- init -- set Open_vSwitch . \
            db-version="$(ovsdb-tool schema-version $OVS_SCHEMA)" \
            ovs-version="$(ovs-vswitchd --version | awk '/Open vSwitch/{print $NF}')" \
            external-ids:system-id="\"$(cat /etc/openvswitch/system-id.conf)\"" \
            external-ids:rundir="\"/var/run/openvswitch\"" \
            external-ids:hostname="\"$(uname -n)\"" \
            system-type="\"$ID\"" system-version="\"$VERSION_ID\"" || return 1
    fi
    if ! vswitchd_pid >/dev/null; then
        ovs-vswitchd unix:$OVS_RUN/db.sock -vconsole:emer -vsyslog:err -vfile:info \
            --no-chdir --log-file=$OVS_LOG/ovs-vswitchd.log --pidfile=$OVS_RUN/ovs-vswitchd.pid --detach \
            || return 1
    fi
}
openvswitch_switch_stop() {
    p=$(vswitchd_pid) && stop_pid "$p" ovs-vswitchd
    p=$(ovsdb_pid) && stop_pid "$p" ovsdb-server
    return 0
}
openvswitch_switch_reload() { openvswitch_switch_start; }

# ------------------------------------------------------------------ cloudstack-agent (stand-in)
AGENT_LOG=/var/log/cloudstack/agent/agent.log
agent_log() {
    mkdir -p /var/log/cloudstack/agent
    echo "$(date '+%F %T'),000 INFO  [cloud.agent.AgentShell] (main:null) $*" >>$AGENT_LOG
}
cloudstack_agent_pid() { [ -e "$STATE/cloudstack-agent.running" ] && echo 0; }
cloudstack_agent_start() {
    cp /etc/cloudstack/agent/agent.properties "$STATE/cloudstack-agent.loaded.properties" 2>/dev/null
    touch "$STATE/cloudstack-agent.running"
    agent_log "Agent started (stackops lab stand-in: no agent process runs; it loaded /etc/cloudstack/agent/agent.properties)"
}
cloudstack_agent_stop() {
    [ -e "$STATE/cloudstack-agent.running" ] || return 0
    rm -f "$STATE/cloudstack-agent.running"
    agent_log "Agent stopped (stackops lab stand-in)"
}
cloudstack_agent_reload() { cloudstack_agent_start; }

# ------------------------------------------------------------------ xapi (XenServer dom0 stand-in, lab simulator)
xapi_pid() { stackops-lab-xapi status >/dev/null 2>&1 && echo 0; }
xapi_start() { stackops-lab-xapi start; }
xapi_stop() { stackops-lab-xapi stop; }
xapi_reload() { xapi_stop; xapi_start; }

# ------------------------------------------------------------------ generic
fn() { echo "$1" | tr .- __; }
is_socket() { case "$1" in *.socket) return 0 ;; esac; return 1; }
main_pid() { is_socket "$1" && return 1; "$(fn "$1")_pid"; }
active_state() {
    if main_pid "$1" >/dev/null; then echo active
    elif [ -e "$STATE/$1.failed" ]; then echo failed
    else echo inactive; fi
}
enabled_state() {
    if [ -e "$UNITS/$1.masked" ]; then echo masked
    elif [ -e "$UNITS/$1.disabled" ]; then echo disabled
    elif is_socket "$1"; then echo disabled
    else echo enabled; fi
}
do_start() {
    if [ -e "$UNITS/$1.masked" ]; then
        err "Failed to start $(unit_file "$1"): Unit $(unit_file "$1") is masked."
        return 1
    fi
    if is_socket "$1"; then
        err "Failed to start $1: socket activation is not emulated in a stackops lab host" \
            "(use LIBVIRTD_ARGS=\"--listen\" in /etc/default/libvirtd)"
        return 1
    fi
    main_pid "$1" >/dev/null && return 0
    if "$(fn "$1")_start"; then
        rm -f "$STATE/$1.failed"
        date '+%a %F %T %Z' >"$STATE/$1.since"
        return 0
    fi
    touch "$STATE/$1.failed"
    err "Job for $(unit_file "$1") failed because the control process exited with error code."
    err "See \"systemctl status $(unit_file "$1")\" and the logs under /var/log for details."
    return 1
}
do_stop() {
    is_socket "$1" && return 0
    "$(fn "$1")_stop"
    rm -f "$STATE/$1.failed"
}
do_status() {
    state=$(active_state "$1")
    case "$state" in
        active) dot="●"; sub="active (running)" ;;
        failed) dot="×"; sub="failed (Result: exit-code)" ;;
        *) dot="○"; sub="inactive (dead)" ;;
    esac
    loaded="loaded (/lib/systemd/system/$(unit_file "$1"); $(enabled_state "$1"); preset: enabled)"
    [ -e "$UNITS/$1.masked" ] && loaded="masked (Reason: Unit $(unit_file "$1") is masked.)"
    echo "$dot $(unit_file "$1") - $(describe "$1")"
    echo "     Loaded: $loaded"
    if [ "$state" = active ]; then
        echo "     Active: $sub since $(cat "$STATE/$1.since" 2>/dev/null || echo boot)"
        p=$(main_pid "$1")
        if [ "$p" != 0 ]; then echo "   Main PID: $p ($(cat /proc/"$p"/comm 2>/dev/null))"
        else echo "   Main PID: (none: stackops lab stand-in)"; fi
        return 0
    fi
    echo "     Active: $sub"
    return 3
}
do_show() {
    state=$(active_state "$1")
    p=$(main_pid "$1" 2>/dev/null) || p=0
    sub=dead; [ "$state" = active ] && sub=running; [ "$state" = failed ] && sub=failed
    load=loaded; [ -e "$UNITS/$1.masked" ] && load=masked
    for prop in Id Names Description LoadState ActiveState SubState MainPID UnitFileState; do
        if [ -n "$props" ]; then case ",$props," in *",$prop,"*) ;; *) continue ;; esac; fi
        case $prop in
            Id|Names) v=$(unit_file "$1") ;;
            Description) v=$(describe "$1") ;;
            LoadState) v=$load ;;
            ActiveState) v=$state ;;
            SubState) v=$sub ;;
            MainPID) v=$p ;;
            UnitFileState) v=$(enabled_state "$1") ;;
        esac
        if [ "$value" = 1 ]; then echo "$v"; else echo "$prop=$v"; fi
    done
}

quiet=0; now=0; value=0; props=; command=; units=
while [ $# -gt 0 ]; do
    case "$1" in
        -q|--quiet) quiet=1 ;;
        --now) now=1 ;;
        --value) value=1 ;;
        -p|--property) shift; props="${props:+$props,}$1" ;;
        -p*) props="${props:+$props,}${1#-p}" ;;
        --property=*) props="${props:+$props,}${1#--property=}" ;;
        --no-pager|--no-block|--system|--full|-l|--no-ask-password|--no-legend|--plain|--no-reload|-f|--force|\
--type=*|--state=*|--all|-a|--lines=*|-n*) ;;
        -*) err "systemctl: option $1 is not supported by the stackops lab shim"; exit 1 ;;
        *) if [ -z "$command" ]; then command=$1; else units="$units $1"; fi ;;
    esac
    shift
done

case "$command" in
    ''|list-units|list-unit-files)
        for u in ssh libvirtd openvswitch-switch cloudstack-agent xapi; do
            canon "$u" >/dev/null || continue
            printf '%-28s %-8s %-10s %s\n' "$(unit_file $u)" loaded "$(active_state $u)" "$(describe $u)"
        done
        exit 0 ;;
    daemon-reload|daemon-reexec|reset-failed) exit 0 ;;
    reboot|poweroff|halt) power "$command"; exit 0 ;;
    --version|-h|--help) echo "systemctl (stackops lab shim)"; exit 0 ;;
esac

[ -n "$units" ] || { err "Too few arguments."; exit 1; }
rc=0
for name in $units; do
    unit=$(canon "$name") || {
        case "$command" in
            status) err "Unit $name could not be found."; [ "$rc" -eq 0 ] && rc=4 ;;
            is-active|is-failed) say inactive; [ "$rc" -eq 0 ] && rc=3 ;;
            is-enabled) err "Failed to get unit file state for $name: No such file or directory"; rc=1 ;;
            *) err "Failed to $command $name: Unit $name not found."; rc=5 ;;
        esac
        continue
    }
    case "$command" in
        start) do_start "$unit" || rc=1 ;;
        stop) do_stop "$unit" ;;
        restart) do_stop "$unit"; do_start "$unit" || rc=1 ;;
        try-restart|condrestart) if main_pid "$unit" >/dev/null; then do_stop "$unit"; do_start "$unit" || rc=1; fi ;;
        reload) if main_pid "$unit" >/dev/null; then "$(fn "$unit")_reload" || rc=1
                else err "Failed to reload $(unit_file "$unit"): Unit $(unit_file "$unit") is not active."; rc=1; fi ;;
        reload-or-restart|force-reload)
            if main_pid "$unit" >/dev/null; then "$(fn "$unit")_reload" || { do_stop "$unit"; do_start "$unit" || rc=1; }
            else do_start "$unit" || rc=1; fi ;;
        is-active) s=$(active_state "$unit"); say "$s"; [ "$s" = active ] || { [ "$rc" -eq 0 ] && rc=3; } ;;
        is-failed) s=$(active_state "$unit"); say "$s"; [ "$s" = failed ] || rc=1 ;;
        status) do_status "$unit" || { [ "$rc" -eq 0 ] && rc=3; } ;;
        show) do_show "$unit" ;;
        is-enabled) s=$(enabled_state "$unit"); say "$s"; [ "$s" = enabled ] || rc=1 ;;
        enable) rm -f "$UNITS/$unit.disabled"; [ "$now" = 1 ] && { do_start "$unit" || rc=1; } ;;
        disable) mkdir -p "$UNITS"; touch "$UNITS/$unit.disabled"; [ "$now" = 1 ] && do_stop "$unit" ;;
        mask) mkdir -p "$UNITS"; touch "$UNITS/$unit.masked"
              say "Created symlink /etc/systemd/system/$(unit_file "$unit") → /dev/null."
              [ "$now" = 1 ] && do_stop "$unit" ;;
        unmask) [ -e "$UNITS/$unit.masked" ] && say "Removed \"/etc/systemd/system/$(unit_file "$unit")\"."
                rm -f "$UNITS/$unit.masked" ;;
        kill) p=$(main_pid "$unit") && [ "$p" != 0 ] && kill "$p" ;;
        *) err "Unknown command verb $command."; exit 1 ;;
    esac
done
exit $rc
"""

SERVICE = r"""#!/bin/sh
# service(8) for a stackops lab host: `service NAME ACTION` is `systemctl ACTION NAME` (see systemctl).
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
case "$1" in
    --status-all)
        for u in cloudstack-agent libvirtd openvswitch-switch ssh xapi; do
            [ "$u" != cloudstack-agent ] || \
                [ "$(dpkg-query -W -f='${db:Status-Status}' cloudstack-agent 2>/dev/null)" = installed ] || continue
            [ "$u" != xapi ] || [ -r /etc/stackops-lab/xapi-control ] || continue
            if systemctl -q is-active "$u"; then echo " [ + ]  $u"; else echo " [ - ]  $u"; fi
        done
        exit 0 ;;
    --version) echo "service ver. 1.65.2 (stackops lab shim)"; exit 0 ;;
    ''|-h|--help) echo "Usage: service < option > | --status-all | [ service_name [ command | --full-restart ] ]" >&2
        exit 1 ;;
esac
name=$1
action=${2:-}
[ -n "$action" ] || { echo "Usage: service $name {start|stop|restart|reload|status}" >&2; exit 1; }
[ "$action" = --full-restart ] && action=restart
exec systemctl "$action" "$name"
"""

XAPI_CONTROL = r"""#!/usr/bin/python3 -I
# stackops-lab-xapi start|stop|status: xapi of a stackops lab host standing in a XenServer dom0. The lab's
# XenAPI simulator serves this host's XenAPI; its control endpoint (address in /etc/stackops-lab/xapi-control,
# on 127.0.0.1 of this host only) stops and starts it. `start` sends /etc/xensource-inventory and whether
# /var/lib/xcp/state.db exists, as xapi reads them when it starts, and returns once xapi serves.
# Exit codes: 0 done / running; 1 failed (reason on stderr); status: 3 stopped.
import json
import os
import sys
import urllib.error
import urllib.request

CONTROL = "/etc/stackops-lab/xapi-control"
INVENTORY = "/etc/xensource-inventory"
STATE_DB = "/var/lib/xcp/state.db"


def call(method, path, body=None):
    with open(CONTROL) as handle:
        endpoint = handle.read().strip()
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://{endpoint}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=120) as answer:
            return answer.status, json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def main(action):
    try:
        if action == "status":
            status, answer = call("GET", "/status")
        elif action == "stop":
            status, answer = call("POST", "/stop", {})
        elif action == "start":
            try:
                with open(INVENTORY) as handle:
                    inventory = handle.read()
            except FileNotFoundError:
                inventory = None
            status, answer = call("POST", "/start", {"inventory": inventory, "state_db": os.path.exists(STATE_DB)})
        else:
            print("usage: stackops-lab-xapi start|stop|status", file=sys.stderr)
            return 2
    except (OSError, ValueError) as error:
        if action == "status":
            print("stopped")
            return 3
        print(f"xapi: the lab's XenAPI simulator does not serve this host ({error})", file=sys.stderr)
        return 1
    if status != 200:
        print(f"xapi: {action} failed: {answer.get('error', status)}", file=sys.stderr)
        return 1
    if action == "status":
        print(answer.get("xapi", "stopped"))
        return 0 if answer.get("xapi") in ("running", "starting") else 3
    return 0


sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else ""))
"""

# cloudstack-agent is not packaged in Debian: what its package installs in /etc/cloudstack/agent (abridged,
# same keys, comments and defaults as shipped).
AGENT_PROPERTIES = """\
# Licensed to the Apache Software Foundation (ASF) under one
# or more contributor license agreements.  See the NOTICE file
# distributed with this work for additional information
# regarding copyright ownership.  The ASF licenses this file
# to you under the Apache License, Version 2.0 (the
# "License"); you may not use this file except in compliance
# with the License.  You may obtain a copy of the License at
#
#   http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing,
# software distributed under the License is distributed on an
# "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY
# KIND, either express or implied.  See the License for the
# specific language governing permissions and limitations
# under the License.

# Sample configuration file for CloudStack agent

# MANDATORY: The GUID to identify the agent with (generate it with "uuidgen").
guid=

# The java class which the agent loads to execute.
resource=com.cloud.hypervisor.kvm.resource.LibvirtComputingResource

# The number of threads running in the agent.
workers=5

# The IP address of the management server.
host=localhost

# The port that the management server is listening on.
port=8250

# The cluster, pod and zone which the agent belongs to.
cluster=default
pod=default
zone=default

# The public and private NIC devices. If commented, they are autodetected on service startup.
#public.network.device=cloudbr0
#private.network.device=cloudbr1

# The guest NIC device. If commented, the private NIC device is used.
#guest.network.device=

# Local storage path. Multiple values can be entered and separated by commas.
#local.storage.path=/var/lib/libvirt/images/

# MANDATORY: The UUID for the local storage pool (generate it with "uuidgen").
local.storage.uuid=

# Location for KVM virtual router scripts, relative to /usr/share/cloudstack-common/.
domr.scripts.dir=scripts/network/domr/kvm

# The timeout (in ms) for time-consuming operations, such as create/copy a snapshot.
#cmds.timeout=7200

# The type of bridge used on the hypervisor: native | openvswitch
#network.bridge.type=native

# The driver used to plug and unplug NICs from the bridges.
#libvirt.vif.driver=com.cloud.hypervisor.kvm.resource.BridgeVifDriver

# DPDK support on Open vSwitch.
#openvswitch.dpdk.enabled=false
#openvswitch.dpdk.ovs.path=/var/run/openvswitch

# The hypervisor type: kvm | lxc
hypervisor.type=kvm

# The CPU model given to guests: custom | host-model | host-passthrough
#guest.cpu.mode=host-model
#guest.cpu.model=

# Automatically clean up iSCSI sessions not attached to any VM.
iscsi.session.cleanup.enabled=false
"""

LOG4J_CLOUD_XML = """\
<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE log4j:configuration SYSTEM "log4j.dtd">

<log4j:configuration xmlns:log4j="http://jakarta.apache.org/log4j/" debug="false">

   <!-- A time/date based rolling appender -->
   <appender name="FILE" class="org.apache.log4j.rolling.RollingFileAppender">
      <param name="Append" value="true"/>
      <param name="Threshold" value="INFO"/>
      <rollingPolicy class="org.apache.log4j.rolling.TimeBasedRollingPolicy">
        <param name="FileNamePattern" value="/var/log/cloudstack/agent/agent.log.%d{yyyy-MM-dd}.gz"/>
        <param name="ActiveFileName" value="/var/log/cloudstack/agent/agent.log"/>
      </rollingPolicy>
      <layout class="org.apache.log4j.EnhancedPatternLayout">
         <param name="ConversionPattern" value="%d{ISO8601} %-5p [%c{3}] (%t:%x) %m%n"/>
      </layout>
   </appender>

   <!-- Append messages to the console -->
   <appender name="CONSOLE" class="org.apache.log4j.ConsoleAppender">
      <param name="Target" value="System.out"/>
      <param name="Threshold" value="INFO"/>
      <layout class="org.apache.log4j.PatternLayout">
         <param name="ConversionPattern" value="%d{ISO8601}{GMT} %-5p [%c{3}] (%t:%x) %m%n"/>
      </layout>
   </appender>

   <!-- Limit categories -->
   <category name="com.cloud">
     <priority value="INFO"/>
   </category>

   <category name="org.apache">
      <priority value="INFO"/>
   </category>

   <category name="org">
      <priority value="INFO"/>
   </category>

   <category name="net">
     <priority value="INFO"/>
   </category>

   <!-- Setup the Root category -->
   <root>
      <level value="INFO"/>
      <appender-ref ref="CONSOLE"/>
      <appender-ref ref="FILE"/>
   </root>

</log4j:configuration>
"""

ENVIRONMENT_PROPERTIES = """\
# Licensed to the Apache Software Foundation (ASF) under the Apache License, Version 2.0.
paths.script=/usr/share/cloudstack-common
"""

# The one drop-in the lab adds to the pristine sshd_config (Debian's sshd_config includes sshd_config.d/*.conf
# first, so these win): listen on the host's address only, with the host's own key, keys only.
SSHD_DROP_IN = """\
# Added by the stackops lab: this host listens on its own address with its own host key.
ListenAddress {address}
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
"""

# The version of the cloudstack-agent stand-in registered as installed on a lab host (unless the host starts
# without it); the lab's apt repository (aptrepo.py) has it and a later one.
AGENT_VERSION = "4.19.1.0"
# What the stand-in depends on: packages every lab host has (installed on the machine, see hosts.HOST_PACKAGES),
# as the real package depends on an emulator, libvirt and iproute2.
AGENT_DEPENDS = "qemu-system-x86 | qemu-kvm, libvirt-daemon-system | libvirt-bin, iproute2"
# What the later stand-in version adds to agent.properties: its shipped file differs, so upgrading over an
# agent.properties the operator edited is a real conffile conflict (dpkg keeps the edited file with confold).
AGENT_PROPERTIES_LATER = """
# Memory (MiB) kept for the host itself, not offered to guests.
#host.reserved.mem.mb=1024
"""


def agent_control(version: str, installed_size_kib: int) -> str:
    """The control stanza of a cloudstack-agent stand-in version."""
    return (
        "Package: cloudstack-agent\n"
        f"Version: {version}\n"
        "Architecture: all\n"
        "Maintainer: Apache CloudStack <dev@cloudstack.apache.org>\n"
        f"Installed-Size: {installed_size_kib}\n"
        f"Depends: {AGENT_DEPENDS}\n"
        "Section: libs\n"
        "Priority: optional\n"
        "Source: cloudstack\n"
        "Homepage: https://cloudstack.apache.org/\n"
        "Description: CloudStack agent (stackops lab stand-in)\n"
        " The lab's stand-in for the Apache CloudStack KVM agent: the configuration files its package\n"
        " installs in /etc/cloudstack/agent and a systemctl unit that records whether it runs. No agent\n"
        " process runs.\n"
    )


def agent_dpkg_status(conffiles: dict[str, str]) -> str:
    """The dpkg status stanza of the registered cloudstack-agent stand-in; `conffiles` maps path to md5."""
    listed = "".join(f" {path} {md5}\n" for path, md5 in conffiles.items())
    control = agent_control(AGENT_VERSION, 16)
    head, _, description = control.partition("Description:")
    head = head.replace("Package: cloudstack-agent\n", "Package: cloudstack-agent\nStatus: install ok installed\n", 1)
    return f"{head}Conffiles:\n{listed}Description:{description}"
