# shellcheck shell=sh
# Does this dom0 reach the pool master (reach.py)? $1: the master's address, $2: the XenAPI port, $3: seconds per
# connect, $4: this host's own address. Exit 0: reached, 10: cannot reach, 11 (or anything else): unknown.
export LC_ALL=C
if ! command -v bash >/dev/null 2>&1 || ! command -v timeout >/dev/null 2>&1; then
    echo "bash or timeout is missing in dom0"; exit 11
fi
# shellcheck disable=SC2016 # $1 and $2 are expanded by bash: the address and port after `probe`
connect() { timeout "$3" bash -c 'exec 3<>"/dev/tcp/$1/$2"' probe "$1" "$2" 2>&1; }
if ! why=$(connect "$4" "$2" "$3"); then
    echo "cannot connect to its own XenAPI ($4:$2) either, so the probe proves nothing: $why"; exit 11
fi
why=$(connect "$1" "$2" "$3")
case $? in
    0) exit 0 ;;
    124) echo "connecting to $1:$2 timed out after $3 s"; exit 10 ;;
    1) echo "cannot connect to $1:$2: ${why##*: }"; exit 10 ;;  # bash: "…/dev/tcp/…: Connection refused"
    *) echo "the probe failed: $why"; exit 11 ;;
esac
