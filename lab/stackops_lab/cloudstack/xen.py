"""Discovering XenServer pools for real, through the official XenAPI SDK, the way CloudStack's XenServer plugin
does (against any XenAPI endpoint: in tests a lab XenLab).

- XenServerConnectionPool.getConnect: log in (`login_with_password(user, password, "2.21", "CloudStack")`);
  a supporter answers HOST_IS_SLAVE [master] and the login is repeated at the master (same scheme and port);
  any failure — wrong credentials, an unreachable host — is the CloudRuntimeException "Unable to create
  master connection to host(<ip>) , due to <error>".
- XcpServerDiscoverer.find: only http URLs ("urlString is not http so we're not taking care of the discovery
  for this: <url>"), only XenServer clusters ("invalid cluster id or cluster is not for XenServer
  hypervisors"); it reads the pool (the first of pool.get_all) and every host record. A cluster without a guid
  takes the pool's uuid (setClusterGuid: the guid is unique, another cluster holding it keeps it while it has
  hosts — the EntityExistsException fails the discovery — and gives it up when it has none); a cluster with
  hosts and another guid refuses: "Please join the host <ip> to XS pool  <guid> through XC/XS before adding it
  through CS UI" (WARN). A host whose uuid is a host guid already in the database is skipped: "Skipping
  <address> because <uuid> is already in the database." (DEBUG) — the cloned-XenServer problem. Every other
  host becomes a CloudStack host: name = name_label, ipaddress = address, guid = uuid, hypervisorversion =
  product_version (CitrixHelper.getProductVersion), found as "Found host <hostname> ip=<address> product
  version=<version>" (INFO); createServerResource refuses brands/versions CloudStack has no resource for.
  Every exception inside find makes it return null (what ResourceManagerImpl reports as "Cannot find the
  server resources at <url>" / "Unable to find the server resources at <url>").
- CitrixResourceBase/AgentManager reconnect (after updateCluster managedstate=Managed, the direct agent scan):
  the pool is found through any host of the cluster (HOST_IS_SLAVE followed, so a new master is found); a
  host is Up when its host_metrics.live is true; a pool with another uuid is XcpServerDiscoverer.processConnect's
  "pool uuid for cluster <id> changed from <guid> to <pool>".

Lab deviation: CloudStack always connects to https://<ip> (443); the simulator speaks plain http to the URL's
address and port (80 without one). CloudStack's log lines are audit events "cloudstack.log" {level, logger,
message}. XenAPI calls run without the state lock, each connection with Timings.xenapi_timeout.
"""

from __future__ import annotations

from collections.abc import Callable

import http.client
import socket
import xmlrpc.client
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import XenAPI

from stackops_lab.cloudstack import catalog
from stackops_lab.cloudstack.state import Cluster, Host

if TYPE_CHECKING:
    from stackops_lab.cloudstack.simulator import CloudStackSimulator

DISCOVERER = "XcpServerDiscoverer"
API_VERSION = "2.21"
ORIGINATOR = "CloudStack"
DEFAULT_PORT = 80


class Unreachable(Exception):
    """The pool could not be read (the text is what CloudStack logs)."""


@dataclass(frozen=True)
class XenHost:
    uuid: str
    name_label: str
    hostname: str
    address: str
    product_brand: str
    product_version: str
    live: bool


@dataclass(frozen=True)
class XenPool:
    uuid: str
    master_address: str
    hosts: tuple[XenHost, ...]


class _Transport(xmlrpc.client.Transport):
    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        connection = super().make_connection(host)
        connection.timeout = self.timeout
        return connection


def log(sim: CloudStackSimulator, level: str, logger: str, message: str) -> None:
    """A line of CloudStack's management-server log, as an audit event."""
    sim.audit_log.record("cloudstack.log", level=level, logger=logger, message=message)


def describe(error: BaseException) -> str:
    if isinstance(error, XenAPI.Failure):
        return f"XenAPI failure {error.details}"
    return f"{type(error).__name__}: {error}"


def _login(address: str, port: int, username: str, password: str, timeout: float) -> XenAPI.Session:
    session = XenAPI.Session(f"http://{address}:{port}", transport=_Transport(timeout))
    session.xenapi.login_with_password(username, password, API_VERSION, ORIGINATOR)
    return session


def master_session(address: str, port: int, username: str, password: str,
                   timeout: float) -> tuple[XenAPI.Session, str]:
    """XenServerConnectionPool.getConnect: a session at the pool master and the master's address."""
    try:
        return _login(address, port, username, password, timeout), address
    except XenAPI.Failure as failure:
        details = [str(d) for d in failure.details]
        if details[:1] != ["HOST_IS_SLAVE"] or len(details) < 2:
            raise Unreachable(f"Unable to create master connection to host({address}) , due to "
                              f"{describe(failure)}") from None
        master = details[1]
    except Exception as error:  # refused, timed out, not XML-RPC
        raise Unreachable(f"Unable to create master connection to host({address}) , due to "
                          f"{describe(error)}") from None
    try:
        return _login(master, port, username, password, timeout), master
    except Exception as error:
        raise Unreachable(f"Unable to create master connection to host({master}) , due to "
                          f"{describe(error)}") from None


def read_pool(address: str, port: int, username: str, password: str, timeout: float) -> XenPool:
    """The pool behind `address` and all its host records (blocking: call without the state lock)."""
    session, master = master_session(address, port, username, password, timeout)
    try:
        api = session.xenapi
        pool = api.pool.get_record(api.pool.get_all()[0])
        metrics = api.host_metrics.get_all_records()
        hosts = []
        for record in api.host.get_all_records().values():
            software = record.get("software_version") or {}
            live = bool(metrics.get(record.get("metrics"), {}).get("live", False))
            hosts.append(XenHost(uuid=record["uuid"], name_label=record["name_label"],
                                 hostname=record.get("hostname", ""), address=record["address"],
                                 product_brand=(software.get("product_brand") or software.get("platform_name")
                                                or "").strip(),
                                 product_version=(software.get("product_version")
                                                  or software.get("platform_version") or "").strip(),
                                 live=live))
        return XenPool(uuid=pool["uuid"], master_address=master, hosts=tuple(hosts))
    except XenAPI.Failure as failure:
        raise Unreachable(f"XenAPI exception: {describe(failure)}") from None
    except Exception as error:
        raise Unreachable(f"other exceptions: {describe(error)}") from None
    finally:
        try:
            session.xenapi.session.logout()
        except Exception:  # "Caught exception during logout"
            pass


def find_pool(addresses: list[str], port: int, username: str, password: str,
              timeout: float) -> tuple[XenPool | None, list[str]]:
    """The first pool any of `addresses` leads to (the reconnect), and why the others did not answer."""
    reasons = []
    for address in addresses:
        try:
            return read_pool(address, port, username, password, timeout), reasons
        except Unreachable as error:
            reasons.append(str(error))
    return None, reasons


def unsupported(brand: str, version: str) -> str | None:
    """XcpServerDiscoverer.createServerResource: None when CloudStack has a resource for the host, else its text."""
    parts = [int(p) if p.isdigit() else -1 for p in version.split(".")] + [0, 0]
    xcp = brand == "XCP" and (version in ("1.0.0", "1.1.0", "5.6.100") or version.startswith(("1.4", "1.6")))
    old = brand == "XenServer" and version in ("5.6.0", "6.0.0", "6.0.2", "6.1.0", "6.2.0", "5.6.100")
    recent = brand in ("XenServer", "XCP-ng", "Citrix Hypervisor") and (
        parts[0] > 6 or (parts[0] == 6 and parts[1] >= 4))
    if xcp or old or recent or brand == "XCP_Kronos":
        return None
    return ("Only support XCP 1.0.0, 1.1.0, 1.4.x, 1.5 beta, 1.6.x; XenServer 5.6,  XenServer 5.6 FP1, XenServer "
            "5.6 SP2, Xenserver 6.0, 6.0.2, 6.1.0, 6.2.0, >6.4.0, Citrix Hypervisor > 8.0.0 but this one is "
            f"{brand} {version}")


def precheck(url: str, scheme: str, cluster: Cluster | None) -> str | None:
    """XcpServerDiscoverer.find's checks before it connects: the reason it returns null, or None."""
    if scheme != "http":
        return f"urlString is not http so we're not taking care of the discovery for this: {url}"
    if cluster is not None and cluster.hypervisor != "XenServer":
        return "invalid cluster id or cluster is not for XenServer hypervisors"
    return None


def claim_guid(sim: CloudStackSimulator, cluster: Cluster, pool_uuid: str) -> bool:
    """XcpServerDiscoverer.setClusterGuid (call with the state lock held): False on the unique-key conflict."""
    state = sim.state
    for other in state.values("cluster"):
        if other is not cluster and other.guid == pool_uuid:
            if any(h.cluster is other for h in state.values("host")):
                log(sim, "WARN", DISCOVERER, f"other exceptions: javax.persistence.EntityExistsException: "
                                             f"cluster guid {pool_uuid} is taken by cluster {other.db_id}")
                return False
            other.guid = None
    cluster.guid = pool_uuid
    return True


def accept(sim: CloudStackSimulator, cluster: Cluster, pool: XenPool, host_ip: str, port: int, username: str,
           password: str, tags: list[str] | None = None) -> list[Host] | None:
    """The rest of XcpServerDiscoverer.find once the pool is read, and createHostAndAgent for each new host
    (call with the state lock held). None when find returns null (the reason is logged)."""
    state = sim.state
    members = [h for h in state.values("host") if h.cluster is cluster]
    if cluster.guid is None or not members:
        if not claim_guid(sim, cluster, pool.uuid):
            return None
    elif cluster.guid != pool.uuid:
        log(sim, "WARN", DISCOVERER, f"Please join the host {host_ip} to XS pool  {cluster.guid} through XC/XS "
                                     "before adding it through CS UI")
        return None
    known = {h.guid for h in state.values("host") if h.guid}
    fresh = []
    for record in pool.hosts:
        if record.uuid in known:
            log(sim, "DEBUG", DISCOVERER,
                f"Skipping {record.address} because {record.uuid} is already in the database.")
            sim.audit_log.record("host.discovery.skipped", name=record.name_label, address=record.address,
                                 uuid=record.uuid, cluster=cluster.uuid)
            continue
        refusal = unsupported(record.product_brand, record.product_version)
        if refusal is not None:
            log(sim, "WARN", DISCOVERER, f"other exceptions: java.lang.RuntimeException: {refusal}")
            return None
        fresh.append(record)
    added = []
    for record in fresh:
        log(sim, "INFO", DISCOVERER, f"Found host {record.hostname} ip={record.address} product "
                                     f"version={record.product_version}")
        host = state.add(Host(uuid=state.new_uuid(), db_id=state.next_id("host"), name=record.name_label,
                              cluster=cluster, address=record.address, state="Connecting",
                              version=catalog.CLOUDSTACK_VERSION, tags=list(tags or []),
                              url=f"http://{record.address}:{port}", guid=record.uuid,
                              hypervisor_version=record.product_version,
                              details={"url": record.address, "username": username, "password": password,
                                       "pool": pool.uuid}))
        sim.audit_log.record("host.added", host=host.uuid, name=host.name, address=host.address,
                             cluster=cluster.uuid, zone=cluster.zone.uuid, tags=host.tags, guid=host.guid,
                             hypervisor="XenServer")
        sim.hostops.connect_later(host)
        added.append(host)
    return added


def discover(sim: CloudStackSimulator, hostname: str, port: int | None, username: str, password: str,
             refuse: Callable[[str], Exception]) -> tuple[XenPool, str, int]:
    """The pool behind a URL's host, with the host's address and port (XcpServerDiscoverer.find, after its checks):
    resolve, log in following HOST_IS_SLAVE, read the pool; a failure is logged as CloudStack logs it and raised
    through `refuse`."""
    address = resolve(hostname)
    if address is None:
        raise refuse("Unable to resolve the host name")
    port = port or DEFAULT_PORT
    try:
        return read_pool(address, port, username, password, sim.timings.xenapi_timeout), address, port
    except Unreachable as error:
        log(sim, "WARN", DISCOVERER, str(error))
        raise refuse(str(error)) from None


def resolve(address: str) -> str | None:
    """InetAddress.getByName(url host).getHostAddress(); None: "Unable to resolve the host name"."""
    try:
        return socket.gethostbyname(address)
    except OSError:
        return None
