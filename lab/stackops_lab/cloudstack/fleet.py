"""The infrastructure a simulator starts with: zones, pods, clusters, hosts, domains, accounts, networks,
VPCs, routers (single and redundant pairs), one SSVM and one CPVM per zone, and one ready SYSTEM template per
hypervisor, all named predictably."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from stackops_lab.cloudstack import catalog, images
from stackops_lab.cloudstack.state import (Account, AgentHost, Cluster, Domain, Host, HypervisorCapability, Network,
                                           OsType, Pod, Router, State, SystemVm, Template, TemplateZone, Vpc, Zone)


@dataclass
class Fleet:
    """Size and shape of the simulated cloud.

    `redundant_pairs` are counted inside `routers` (50 pairs = 100 routers in pairs, the rest single);
    `vpc_share` of the pairs and of the singles belong to a VPC instead of an isolated network. Routers and
    system VMs run `router_version`, the version of the SYSTEM template `systemvm-<hv>-<router_version>` that
    each zone's `router.template.<hv>` names and its `minreq.sysvmtemplate.version` requires.
    """

    zones: int = 2
    hypervisors: tuple[str, ...] = ("KVM", "XenServer")
    routers: int = 200
    redundant_pairs: int = 50
    vpc_share: float = 0.2
    router_version: str = "4.18.0"
    domains: int = 3
    accounts_per_domain: int = 4
    hosts_per_cluster: int = 2
    seed: int = 1

    def validate(self) -> None:
        if self.zones < 1 or self.hosts_per_cluster < 1 or self.domains < 1 or self.accounts_per_domain < 1:
            raise ValueError("a fleet needs at least one zone, host per cluster, domain and account per domain")
        if not self.hypervisors:
            raise ValueError("a fleet needs at least one hypervisor")
        for name in self.hypervisors:
            if catalog.hypervisor_name(name) is None or name.lower() not in images.HYPERVISOR_FILES:
                raise ValueError(f"unknown hypervisor {name!r}")
        if self.routers < 0 or self.redundant_pairs < 0 or 2 * self.redundant_pairs > self.routers:
            raise ValueError("redundant_pairs are counted inside routers: need 2 * redundant_pairs <= routers")
        if not 0 <= self.vpc_share <= 1:
            raise ValueError("vpc_share must lie in [0, 1]")


def _spread(index: int, share: float) -> bool:
    """True for an evenly spread `share` of indexes 0, 1, 2, …"""
    return int((index + 1) * share) > int(index * share)


class FleetBuilder:
    """Fills a State with a Fleet. `image_url(hypervisor, version)` gives the URL of the lab image."""

    def __init__(self, state: State, fleet: Fleet, image_url: Callable[[str, str], str],
                 api_key: str, secret_key: str) -> None:
        self.state = state
        self.fleet = fleet
        self.image_url = image_url
        self.api_key = api_key
        self.secret_key = secret_key
        self.random = random.Random(fleet.seed)

    def uuid(self) -> uuid.UUID:
        return uuid.UUID(int=self.random.getrandbits(128), version=4)

    def new(self, cls: type, sequence: str, **fields: object):  # noqa: ANN201 - returns an instance of cls
        state = self.state
        return state.add(cls(uuid=state.new_uuid(), db_id=state.next_id(sequence), **fields))

    def build(self) -> None:
        self.fleet.validate()
        state = self.state
        state.uuid_source = self.uuid
        try:
            self.accounts()
            for description, category in catalog.OS_TYPES:
                self.new(OsType, "ostype", description=description, category=category)
            for config in catalog.config_defs():
                state.define(config)
            zones = [self.zone(index) for index in range(self.fleet.zones)]
            templates = {hv: self.system_template(hv, zones) for hv in self.hypervisors()}
            for index, zone in enumerate(zones):
                for hv, template in templates.items():
                    state.zone_values[(f"router.template.{hv.lower()}", zone.uuid)] = template.name
                state.zone_values[("minreq.sysvmtemplate.version", zone.uuid)] = self.fleet.router_version
                self.system_vms(index, zone, templates)
            self.routers(zones, templates)
            for hv in self.hypervisors():
                self.new(HypervisorCapability, "hypervisorcapability", hypervisor=hv,
                         **catalog.HYPERVISOR_CAPABILITIES.get(hv, {}))
        finally:
            state.uuid_source = uuid.uuid4

    def hypervisors(self) -> list[str]:
        return [catalog.hypervisor_name(name) or name for name in self.fleet.hypervisors]

    def accounts(self) -> None:
        state = self.state
        root = self.new(Domain, "domain", name="ROOT")
        state.root_domain = root
        state.system_account = self.new(Account, "account", name="system", domain=root, account_type=1,
                                        user_uuid=str(self.uuid()), username="system")
        state.admin = self.new(Account, "account", name="admin", domain=root, account_type=1,
                               user_uuid=str(self.uuid()), username="admin", api_key=self.api_key,
                               secret_key=self.secret_key)
        for d in range(1, self.fleet.domains + 1):
            domain = self.new(Domain, "domain", name=f"lab-domain-{d}", parent=root)
            for a in range(1, self.fleet.accounts_per_domain + 1):
                self.new(Account, "account", name=f"lab-domain-{d}-account-{a}", domain=domain,
                         user_uuid=str(self.uuid()), username=f"user-{d}-{a}")

    def zone(self, index: int) -> Zone:
        zone = self.new(Zone, "zone", name=f"lab-zone-{index + 1}")
        pod = self.new(Pod, "pod", name=f"{zone.name}-pod-1", zone=zone)
        for c, hv in enumerate(self.hypervisors()):
            cluster = self.new(Cluster, "cluster", name=f"{zone.name}-{hv.lower()}", pod=pod, hypervisor=hv)
            for h in range(1, self.fleet.hosts_per_cluster + 1):
                self.new(Host, "host", name=f"{cluster.name}-host-{h}", cluster=cluster,
                         address=f"172.16.{index * 16 + c}.{10 + h}", version=catalog.CLOUDSTACK_VERSION,
                         url=f"http://172.16.{index * 16 + c}.{10 + h}")
        return zone

    def system_template(self, hv: str, zones: list[Zone]) -> Template:
        version = self.fleet.router_version
        url = self.image_url(hv, version)
        data = images.image_bytes(url.rsplit("/", 1)[1])
        template = self.new(Template, "template", name=f"systemvm-{hv.lower()}-{version}",
                            display_text=f"SystemVM Template ({hv}) {version}", hypervisor=hv,
                            format=images.image_format(hv), template_type="SYSTEM", url=url,
                            checksum=images.checksum(data, "SHA-512"), account=self.state.system_account,
                            cross_zones=True, size=len(data), version=version,
                            ostype=self.state.values("ostype")[1])
        for zone in zones:
            template.zones[zone.uuid] = TemplateZone(zone=zone, download_state="DOWNLOADED", percent=100,
                                                     store_state="Ready")
        return template

    def hosts_of(self, zone: Zone, hv: str) -> list[Host]:
        return [host for host in self.state.values("host")
                if host.cluster.zone is zone and host.hypervisor == hv]

    def system_vms(self, index: int, zone: Zone, templates: dict[str, Template]) -> None:
        hypervisors = self.hypervisors()
        hv = hypervisors[index % len(hypervisors)]
        host = self.hosts_of(zone, hv)[0]
        for vm_type, letter in (("secondarystoragevm", "s"), ("consoleproxy", "v")):
            vm_id = self.state.next_id("vm")
            vm = self.state.add(SystemVm(uuid=self.state.new_uuid(), db_id=vm_id, name=f"{letter}-{vm_id}-VM",
                                         vm_type=vm_type, zone=zone, host=host, hypervisor=hv,
                                         template=templates[hv], private_ip=f"172.16.{index * 16 + 15}.{vm_id}",
                                         public_ip=f"192.0.2.{vm_id % 250 + 2}",
                                         link_local_ip=f"169.254.{vm_id // 250}.{vm_id % 250 + 2}"))
            vm.agent = self.new(AgentHost, "host", vm=vm)

    def routers(self, zones: list[Zone], templates: dict[str, Template]) -> None:
        fleet = self.fleet
        combos = [(zone, hv) for zone in zones for hv in self.hypervisors()]
        load = [0] * len(combos)
        tenants = [account for account in self.state.values("account") if account.account_type == 0]
        units = [2] * fleet.redundant_pairs + [1] * (fleet.routers - 2 * fleet.redundant_pairs)
        next_host = [0] * len(combos)
        pair_index = single_index = 0
        for unit_index, size in enumerate(units):
            combo = min(range(len(combos)), key=lambda c: (load[c], c))
            load[combo] += size
            zone, hv = combos[combo]
            account = tenants[unit_index % len(tenants)]
            if size == 2:
                in_vpc = _spread(pair_index, fleet.vpc_share)
                pair_index += 1
            else:
                in_vpc = _spread(single_index, fleet.vpc_share)
                single_index += 1
            vpc = network = None
            if in_vpc:
                vpc = self.new(Vpc, "vpc", name=f"lab-vpc-{self.state.sequences.get('vpc', 0) + 1}", zone=zone,
                               account=account, redundant=size == 2,
                               cidr=f"10.{unit_index // 250 % 250}.{unit_index % 250}.0/24")
            else:
                number = self.state.sequences.get("network", 0) + 1
                network = self.new(Network, "network", name=f"lab-net-{number}", zone=zone, account=account,
                                   redundant=size == 2,
                                   cidr=f"10.{100 + unit_index // 250 % 150}.{unit_index % 250}.0/24")
            hosts = self.hosts_of(zone, hv)
            members = []
            for member in range(size):
                host = hosts[next_host[combo] % len(hosts)]
                next_host[combo] += 1
                members.append(self.router(zone, host, templates[hv], account, network, vpc, size == 2,
                                            "PRIMARY" if member == 0 else "BACKUP"))
            if size == 2:
                first, second = members
                first.peer, second.peer = second, first
                first.pair_key = second.pair_key = (network or vpc).name  # type: ignore[union-attr]

    def router(self, zone: Zone, host: Host, template: Template, account: Account, network: Network | None,
               vpc: Vpc | None, redundant: bool, role: str) -> Router:
        vm_id = self.state.next_id("vm")
        return self.state.add(Router(
            uuid=self.state.new_uuid(), db_id=vm_id, name=f"r-{vm_id}-VM", zone=zone, host=host,
            template=template, version=template.version, state="Running", redundant=redundant,
            redundant_state=role if redundant else "UNKNOWN", network=network, vpc=vpc, account=account,
            hypervisor=host.hypervisor,
            guest_ip=f"10.{vm_id // 250 % 250}.{vm_id % 250}.1", public_ip=f"198.51.{vm_id // 250 % 250}.{vm_id % 250}",
            link_local_ip=f"169.254.{vm_id // 250 % 250}.{vm_id % 250 + 2}"))
