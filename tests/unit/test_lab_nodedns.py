"""The lab node's cluster DNS (stackops_lab.nodedns): Services' names answered with their ClusterIP, other names of
the cluster domain NXDOMAIN, the rest forwarded."""
from __future__ import annotations

import socket
import struct

from stackops_lab import nodedns


class FakeServices:
    def __init__(self, known: dict[tuple[str, str], str]) -> None:
        self.known = known

    def cluster_ip(self, namespace: str, name: str) -> str | None:
        return self.known.get((namespace, name))


def query(name: str, qtype: int = nodedns.TYPE_A, ident: int = 0x1234) -> bytes:
    question = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + question + struct.pack("!HH", qtype, nodedns.CLASS_IN)


def decode(answer: bytes) -> tuple[int, int, list[str]]:
    ident, flags, _, count, _, _ = struct.unpack("!HHHHHH", answer[:12])
    addresses = [socket.inet_ntoa(answer[-4 * (i + 1):][:4]) for i in range(count)]
    return ident, flags & 0xF, addresses


SERVICES = FakeServices({("default", "web"): "10.96.0.42"})


def test_a_service_name_is_answered_with_its_cluster_ip() -> None:
    answer = nodedns.answer(query("web.default.svc.cluster.local"), SERVICES, upstream=None)  # type: ignore[arg-type]
    assert decode(answer) == (0x1234, nodedns.NOERROR, ["10.96.0.42"])
    assert nodedns.parse_question(answer)[0] == "web.default.svc.cluster.local"


def test_other_types_of_a_service_name_have_no_answer_and_unknown_names_no_domain() -> None:
    aaaa = nodedns.answer(query("web.default.svc.cluster.local", qtype=28), SERVICES, None)  # type: ignore[arg-type]
    assert decode(aaaa)[1:] == (nodedns.NOERROR, [])
    for name in ("nothing.default.svc.cluster.local", "web.default.cluster.local", "cluster.local",
                 "a.b.c.svc.cluster.local"):
        assert decode(nodedns.answer(query(name), SERVICES, None))[1] == nodedns.NXDOMAIN  # type: ignore[arg-type]


def test_names_outside_the_cluster_fail_without_an_upstream() -> None:
    assert decode(nodedns.answer(query("deb.debian.org"), SERVICES, None))[1] == nodedns.SERVFAIL  # type: ignore[arg-type]


def test_the_machine_resolver_is_the_first_ipv4_nameserver(tmp_path) -> None:  # type: ignore[no-untyped-def]
    conf = tmp_path / "resolv.conf"
    conf.write_text("# generated\nsearch example.org\nnameserver ::1\nnameserver 10.255.255.53\nnameserver 9.9.9.9\n")
    assert nodedns.machine_resolver(conf) == "10.255.255.53"
