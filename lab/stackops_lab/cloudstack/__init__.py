"""A lab CloudStack management server: a protocol-level simulator of the CloudStack HTTP API (signing,
envelopes, error codes, async jobs) with a generated fleet of zones, hosts, routers and system VMs.

    from stackops_lab.cloudstack import CloudStackSimulator, Fleet, Timings, Faults
"""

from stackops_lab.cloudstack.faults import Faults
from stackops_lab.cloudstack.fleet import Fleet
from stackops_lab.cloudstack.simulator import CloudStackSimulator
from stackops_lab.cloudstack.timings import Timings

__all__ = ["CloudStackSimulator", "Faults", "Fleet", "Timings"]
