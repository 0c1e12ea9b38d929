"""The lab node's cluster DNS: `<service>.<namespace>.svc.cluster.local` answered from the API server's Services,
every other name forwarded to the machine's own resolver. The node's Pods use it (kubelet --cluster-dns), so names
resolve in them as in any cluster (`web`, `web.default`, `web.default.svc.cluster.local`).

A small UDP server (no image exists for CoreDNS here: nothing is pulled from a registry), run by the node on the
machine's end of the node's link (`python -m stackops_lab.nodedns --kubeconfig K --listen ADDRESS`): A records
of ClusterIPs (TTL 5 s), NXDOMAIN for other names of the cluster domain, no answer but NOERROR for other types of an
existing Service's name. Headless Services and Pod records are not served.
"""

from __future__ import annotations

import argparse
import base64
import json
import socket
import ssl
import struct
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import yaml

CLUSTER_DOMAIN = "cluster.local"
TYPE_A = 1
CLASS_IN = 1
TTL = 5
NOERROR, SERVFAIL, NXDOMAIN = 0, 2, 3
UPSTREAM_TIMEOUT = 5.0


class Services:
    """ClusterIPs read from the API server with the kubeconfig's token (read at each miss: the lab is small)."""

    def __init__(self, kubeconfig: Path) -> None:
        config = yaml.safe_load(kubeconfig.read_text())
        cluster = config["clusters"][0]["cluster"]
        self.server = cluster["server"]
        self.token = config["users"][0]["user"]["token"]
        self.context = ssl.create_default_context(
            cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())

    def cluster_ip(self, namespace: str, name: str) -> str | None:
        request = urllib.request.Request(f"{self.server}/api/v1/namespaces/{namespace}/services/{name}",
                                         headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=5) as response:
                service = json.load(response)
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise
        address = service.get("spec", {}).get("clusterIP") or ""
        return address if address and address != "None" else None


def parse_question(packet: bytes) -> tuple[str, int, int, int]:
    """(name, type, class, offset after the question) of a query's first question."""
    labels, offset = [], 12
    while True:
        length = packet[offset]
        offset += 1
        if length == 0:
            break
        if length & 0xC0:
            raise ValueError("compressed name in a question")
        labels.append(packet[offset:offset + length].decode("ascii", errors="replace"))
        offset += length
    qtype, qclass = struct.unpack("!HH", packet[offset:offset + 4])
    return ".".join(labels).lower(), qtype, qclass, offset + 4


def reply(query: bytes, end_of_question: int, rcode: int, address: str | None = None) -> bytes:
    (ident, flags) = struct.unpack("!HH", query[:4])
    flags = 0x8000 | (flags & 0x0100) | 0x0400 | 0x0080 | rcode  # response, RD copied, authoritative, RA
    answers = 1 if address else 0
    header = struct.pack("!HHHHHH", ident, flags, 1, answers, 0, 0)
    body = query[12:end_of_question]
    if address:
        body += struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, TTL, 4) + socket.inet_aton(address)
    return header + body


def service_of(name: str, domain: str) -> tuple[str, str] | None:
    """(namespace, service) of `<service>.<namespace>.svc.<domain>`, else None."""
    suffix = f".svc.{domain}"
    if not name.endswith(suffix):
        return None
    parts = name.removesuffix(suffix).split(".")
    return (parts[1], parts[0]) if len(parts) == 2 else None


def answer(query: bytes, services: Services, upstream: str | None, domain: str = CLUSTER_DOMAIN) -> bytes:
    name, qtype, qclass, end = parse_question(query)
    if name == domain or name.endswith("." + domain):
        target = service_of(name, domain)
        if target is None:
            return reply(query, end, NXDOMAIN)
        try:
            address = services.cluster_ip(*target)
        except OSError:
            return reply(query, end, SERVFAIL)
        if address is None:
            return reply(query, end, NXDOMAIN)
        return reply(query, end, NOERROR, address if (qtype, qclass) == (TYPE_A, CLASS_IN) else None)
    if upstream is None:
        return reply(query, end, SERVFAIL)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as forward:
        forward.settimeout(UPSTREAM_TIMEOUT)
        try:
            forward.sendto(query, (upstream, 53))
            return forward.recv(4096)
        except OSError:
            return reply(query, end, SERVFAIL)


def machine_resolver(resolv_conf: Path = Path("/etc/resolv.conf")) -> str | None:
    for line in resolv_conf.read_text().splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver" and "." in words[1]:
            return words[1]
    return None


def serve(listen: str, services: Services, upstream: str | None) -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind((listen, 53))

    def handle(query: bytes, client: tuple[str, int]) -> None:
        try:
            server.sendto(answer(query, services, upstream), client)
        except (ValueError, IndexError, struct.error, OSError):
            pass  # not a query we can read: no answer, as a resolver would time out

    while True:
        query, client = server.recvfrom(4096)
        threading.Thread(target=handle, args=(query, client), daemon=True).start()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m stackops_lab.nodedns", description=__doc__)
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--listen", required=True)
    args = parser.parse_args(argv)
    upstream = machine_resolver()
    print(f"cluster DNS for *.svc.{CLUSTER_DOMAIN} on {args.listen}:53, other names to {upstream}", flush=True)
    serve(args.listen, Services(args.kubeconfig), upstream)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
