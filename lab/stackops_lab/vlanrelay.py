"""The machine's port on one VLAN of a lab's switch (run by `stackops_lab.hosts.LabHosts.carry_vlan`, standard
library only, never imported).

The machine's kernel has no VLAN devices (no 8021q, no VLAN filtering on bridges), so the VLAN is carried in user
space: `python3 -I -S vlanrelay.py <port> <tap> <vlan>` reads the frames that come out of `<port>` (the far end of
a veth pair whose other end is a port of the lab's bridge) and passes those tagged `<vlan>` to the tap device
`<tap>` (which it creates) without their tag, and what the machine sends through the tap back to `<port>` with
the tag. The tap carries the machine's address on the VLAN. It prints "ready" once the tap exists and runs until
SIGTERM; the tap goes with it.
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import socket
import struct
import sys

ETH_P_ALL = 0x0003
ETH_P_8021Q = 0x8100
SOL_PACKET = 263
PACKET_AUXDATA = 8
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
TP_STATUS_VLAN_VALID = 0x10
TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
AUXDATA = struct.Struct("IIIHHHH")  # struct tpacket_auxdata
FRAME = 65536


def open_tap(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    return fd


def open_port(name: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((name, 0))
    sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    index = socket.if_nametoindex(name)
    sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, struct.pack("iHH8s", index, PACKET_MR_PROMISC, 0, b""))
    return sock


def vlan_of(frame: bytes, ancillary: list) -> tuple[int | None, bytes]:
    """(VLAN, the frame without its tag): the kernel takes the tag off into the packet's metadata (auxdata); a
    frame that still has it in its header is read from there."""
    for level, kind, data in ancillary:
        if level == SOL_PACKET and kind == PACKET_AUXDATA and len(data) >= AUXDATA.size:
            status, _, _, _, _, tci, _ = AUXDATA.unpack(data[:AUXDATA.size])
            if status & TP_STATUS_VLAN_VALID:
                return tci & 0xFFF, frame
    if len(frame) >= 18 and struct.unpack("!H", frame[12:14])[0] == ETH_P_8021Q:
        return struct.unpack("!H", frame[14:16])[0] & 0xFFF, frame[:12] + frame[16:]
    return None, frame


def main() -> int:
    port, tap, vlan = sys.argv[1], sys.argv[2], int(sys.argv[3])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    tap_fd = open_tap(tap)
    sock = open_port(port)
    tag = struct.pack("!HH", ETH_P_8021Q, vlan)
    print("ready", flush=True)
    while True:
        readable, _, _ = select.select([sock, tap_fd], [], [])
        if sock in readable:
            frame, ancillary, _, address = sock.recvmsg(FRAME, socket.CMSG_SPACE(AUXDATA.size))
            if address[2] != socket.PACKET_OUTGOING:
                found, untagged = vlan_of(frame, ancillary)
                if found == vlan:
                    os.write(tap_fd, untagged)
        if tap_fd in readable:
            frame = os.read(tap_fd, FRAME)
            if len(frame) >= 14:
                sock.send(frame[:12] + tag + frame[12:])


if __name__ == "__main__":
    sys.exit(main())
