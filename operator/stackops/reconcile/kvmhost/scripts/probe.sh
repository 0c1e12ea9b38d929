# shellcheck shell=sh
# The KvmHost probe (probe.py): everything observe needs in one SSH round trip, as sections `@@<name> <argument>`
# followed by their output, in few processes (a resync probes every host): one `dpkg-query` for all packages, one
# `stat` of the binaries and client files, one `ovs-vsctl` for all tables, one `ip`, one `systemctl`, one `ss`,
# and every file it reads in one `tar | base64` (the files section, last; the reboot sentinel with them), and on EL
# only `needs-restarting -r`. What the shell can do itself it does
# (`read` of /proc and /sys files, globs, `command -v`); nothing that is not there is run.
# $1: the binaries whose version the operator knows (`dev:inode:size:mtime:path` of `stat -L`, blank-separated):
# their `--version` is not run again (probe.Probe keeps the versions), nor `apt-cache madison` for a package index
# identity in it (`apt-index:…`, below). The rest of the positional parameters ($@)
# are the package names to query, passed quoted by the operator: `apt:name` / `yum:name` for a name only that
# manager uses, the pinned agent as name=version. For packages to install (not installed, or not the pinned
# version) on an apt host it also reports the age of the package index and the versions it lists (`apt-cache
# madison`): nothing more for a host whose packages are all there.
# The paths (PROBED_FILES, GENERATED_CERT, SECRET_FILES, SECRET_CERT, APPARMOR_DIR, IFCFG_FILES: a glob) come from
# paths.py; the checkpoints section (probe-checkpoints.sh) takes the place of the line that says so.
export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
section() { printf '\n@@%s %s\n' "$1" "$2"; }
have() { command -v "$1" >/dev/null 2>&1; }
# where NAME: $hit, the file `command -v NAME` finds on PATH (an absolute NAME as it is), without a subshell
where() {
  hit=
  case $1 in /*) if [ -f "$1" ] && [ -x "$1" ]; then hit=$1; fi; return ;; esac
  for d in /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do
    if [ -f "$d/$1" ] && [ -x "$d/$1" ]; then hit=$d/$1; return; fi
  done
}
known=${1-}
if [ $# -gt 0 ]; then shift; fi
dump=  # files for the files section, relative to /
section os -
if [ -r /etc/os-release ]; then
  pretty=
  while IFS= read -r line || [ -n "$line" ]; do
    case $line in PRETTY_NAME=*) pretty=${line#PRETTY_NAME=} ;; esac
  done < /etc/os-release
  case $pretty in
    \"*\") pretty=${pretty#\"}; pretty=${pretty%\"} ;;
    \'*\') pretty=${pretty#\'}; pretty=${pretty%\'} ;;
  esac
  printf '%s\n' "$pretty"
fi
section kernel -
if read -r kernel < /proc/sys/kernel/osrelease; then printf '%s\n' "$kernel"; fi
section pm -
pm=
if have apt-get; then pm=apt; elif have dnf; then pm=dnf; elif have yum; then pm=yum; fi
if [ -n "$pm" ]; then echo "$pm"; fi
section packages -
nl='
'
tab='	'  # a tab (not $(printf '\t'): no subshell)
todo=; names=; found=
if have dpkg-query; then
  for a in "$@"; do
    case "$a" in yum:*) continue ;; apt:*) a=${a#apt:} ;; esac
    names="$names ${a%%=*}"
  done
  set -f  # the names (the API's pattern: no blank, no glob) are split, never globbed
  # shellcheck disable=SC2086
  if [ -n "$names" ]; then
    found=$(dpkg-query -W -f='${Package}\t${Version}\t${db:Status-Status}\n' $names 2>/dev/null)
  fi
  set +f
  if [ -n "$found" ]; then printf '%s\n' "$found"; fi
  installed=$nl  # `name<tab>version` of each installed package, a line each
  while IFS=$tab read -r p v s; do
    if [ "$s" = installed ]; then installed="$installed$p$tab$v$nl"; fi
  done <<EOF
$found
EOF
  for a in "$@"; do
    case "$a" in yum:*) continue ;; apt:*) a=${a#apt:} ;; esac
    p=${a%%=*}; v=; case "$a" in *=*) v=${a#*=} ;; esac
    case "$installed" in
      *"$nl$p$tab$v$nl"*) continue ;;
      *"$nl$p$tab"*) if [ -z "$v" ]; then continue; fi ;;
    esac
    todo="$todo $p"
  done
elif have rpm; then
  for a in "$@"; do
    case "$a" in apt:*) continue ;; yum:*) a=${a#yum:} ;; esac
    names="$names ${a%%=*}"
  done
  set -f
  # shellcheck disable=SC2086
  if [ -n "$names" ]; then found=$(rpm -q --qf '%{NAME}\t%{VERSION}-%{RELEASE}\tinstalled\n' $names 2>/dev/null); fi
  set +f
  while IFS= read -r line; do
    case "$line" in *"${tab}installed") printf '%s\n' "$line" ;; esac
  done <<EOF
$found
EOF
fi
section apt-index -
if [ -n "$todo" ] && have apt-cache; then
  now=$(date +%s)
  lists=$(find /var/lib/apt/lists -maxdepth 1 -type f -name '*_Packages*' -printf '%T@ %s\n' 2>/dev/null)
  newest=; files=0; bytes=0
  while read -r t size; do
    t=${t%.*}; if [ -z "$t" ]; then continue; fi
    files=$((files + 1)); bytes=$((bytes + ${size:-0}))
    if [ -z "$newest" ] || [ "$t" -gt "$newest" ]; then newest=$t; fi
  done <<EOF
$lists
EOF
  if [ -n "$newest" ]; then printf 'age %s\n' "$((now - newest))"; else echo 'age none'; fi
  # what `apt-cache madison` answers depends on the index and on the names asked; their identity (the index
  # files' newest time, number and size, then the names): the operator remembers the answer to each (probe.Probe)
  index=apt-index:${newest:-none}:$files:$bytes
  set -f
  for p in $todo; do index=$index:$p; done
  case " $known " in
    *" $index "*) printf 'known %s\n' "$index" ;;
    *)
      printf 'index %s\n' "$index"
      # shellcheck disable=SC2086
      listed=$(apt-cache madison $todo 2>/dev/null)
      while IFS='|' read -r p v origin; do
        case "$origin" in *Packages*) ;; *) continue ;; esac
        p=${p#"${p%%[! ]*}"}; p=${p%"${p##*[! ]}"}; v=${v#"${v%%[! ]*}"}; v=${v%"${v##*[! ]}"}
        printf 'available %s %s\n' "$p" "$v"
      done <<EOF
$listed
EOF
      ;;
  esac
  set +f
fi
# The binaries whose version is reported, and the client files written from a Secret: one `stat` for all
where ovs-vsctl; ovs=$hit
where libvirtd; libvirt=$hit
qemu=; qemu_command=
for q in qemu-system-x86_64 /usr/libexec/qemu-kvm qemu-kvm; do
  where "$q"; if [ -n "$hit" ]; then qemu=$hit; qemu_command=$q; break; fi
done
secrets=
for f in $SECRET_FILES; do if [ -f "$f" ]; then secrets="$secrets $f"; fi; done
stats=
set -f
# shellcheck disable=SC2086
if [ -n "$ovs$libvirt$qemu$secrets" ]; then
  stats=$(stat -L -c '%d:%i:%s:%Y %a %n' $ovs $libvirt $qemu $secrets 2>/dev/null)
fi
set +f
ovs_id=-; libvirt_id=-; qemu_id=-; modes=$nl
while read -r id mode path; do
  case "$path" in
    '') ;;
    "$ovs") ovs_id=$id:$path ;;
    "$libvirt") libvirt_id=$id:$path ;;
    "$qemu") qemu_id=$id:$path ;;
    *) if [ -L "$path" ]; then mode=777; fi; modes="$modes$path $mode$nl" ;;  # a link: its own mode (stat -c %a)
  esac
done <<EOF
$stats
EOF
# version SECTION COMMAND BINARY IDENTITY: the first line of `COMMAND --version` (nothing if there is no BINARY),
# or @@known if the operator knows the version of the binary with that IDENTITY (`-`: unknown)
version() {
  section "$1" "$4"
  if [ -z "$3" ]; then return; fi
  case " $known " in *" $4 "*) echo @@known; return ;; esac
  out=$("$2" --version 2>/dev/null)
  printf '%s\n' "${out%%"$nl"*}"
}
version ovs-version ovs-vsctl "$ovs" "$ovs_id"
if [ -n "$ovs" ] && out=$(ovs-vsctl --timeout=5 --format=json --data=json \
    -- --columns=_uuid,name,datapath_type,ports,external_ids list Bridge \
    -- --columns=_uuid,name,interfaces,tag,fake_bridge,bond_mode,lacp,other_config,external_ids list Port \
    -- --columns=_uuid,name,type,options,mtu_request,mtu,external_ids list Interface \
    -- --columns=target,is_connected list Manager \
    -- --columns=private_key,certificate,ca_cert,bootstrap_ca_cert list SSL 2>/dev/null); then
  section ovs -  # the tables Bridge, Port, Interface, Manager and SSL, one JSON document each
  printf '%s\n' "$out"
fi
version libvirt-version libvirtd "$libvirt" "$libvirt_id"
version qemu-version "$qemu_command" "$qemu" "$qemu_id"
for f in $PROBED_FILES $IFCFG_FILES "$GENERATED_CERT" "$SECRET_CERT" $REBOOT_FILES; do
  if [ -f "$f" ]; then dump="$dump ${f#/}"; fi
done
section ip -; if have ip; then ip -j addr show 2>/dev/null; fi
section services -
if have systemctl; then
  states=$(systemctl is-active libvirtd openvswitch-switch openvswitch cloudstack-agent 2>/dev/null)$nl
  for s in libvirtd openvswitch-switch openvswitch cloudstack-agent; do
    printf '%s %s\n' "$s" "${states%%"$nl"*}"; states=${states#*"$nl"}
  done
fi
section apparmor -
if [ -r /sys/module/apparmor/parameters/enabled ] && read -r enabled < /sys/module/apparmor/parameters/enabled; then
  printf '%s\n' "$enabled"
fi
section apparmor-disabled -
for f in "$APPARMOR_DIR"/disable/*; do if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\n' "${f##*/}"; fi; done
section selinux -; if have getenforce; then getenforce 2>/dev/null; fi
section client-files -
if [ -n "$secrets" ] && have sha256sum; then
  set -f
  # shellcheck disable=SC2086
  sums=$(sha256sum $secrets 2>/dev/null)
  set +f
  while read -r sum path; do
    case "$modes" in
      *"$nl$path "*) mode=${modes#*"$nl$path "}; printf '%s %s %s\n' "${mode%%"$nl"*}" "$sum" "$path" ;;
    esac
  done <<EOF
$sums
EOF
fi
# Whether the host needs a reboot: the sentinel (REBOOT_FILES) comes with the files; on EL (dnf/yum), where
# nothing writes it, `needs-restarting -r` (dnf-utils/yum-utils) answers by its exit status (1: needed, 0: not), a
# process only there and only if it is installed. The section says the probe looked.
section reboot -
if [ "$pm" = dnf ] || [ "$pm" = yum ]; then
  if have needs-restarting; then
    section needs-restarting -
    needs-restarting -r </dev/null 2>/dev/null
    section needs-restarting-exit "$?"
  fi
fi
# The boot: its id, and when it began (the kernel's btime plus PID 1's start time in clock ticks, field 22 of
# /proc/1/stat), read with the shell's own `read`: no process.
section boot -
boot_id=; btime=; pid1=
read -r boot_id </proc/sys/kernel/random/boot_id 2>/dev/null
while read -r key value; do if [ "$key" = btime ]; then btime=$value; break; fi; done </proc/stat 2>/dev/null
read -r pid1 </proc/1/stat 2>/dev/null
printf '%s\n%s\n%s\n' "$boot_id" "$btime" "$pid1"
section listening -; if have ss; then ss -Hltn 2>/dev/null; fi
# stackops: the checkpoints section (guard.PROBE_SECTION) goes here
# The files read, in one pass: a tar of them (following links), base64; the section's argument lists them (all
# must be in the archive). Without tar, each file in a section of its own.
section files "${dump:--}"
if [ -n "$dump" ]; then
  set -f
  if have tar; then
    # shellcheck disable=SC2086
    tar -C / -chf - -- $dump 2>/dev/null | base64
  else
    for f in $dump; do section file "/$f"; base64 < "/$f"; done
  fi
  set +f
fi
true
