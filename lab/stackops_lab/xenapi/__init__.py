"""A lab XenServer: a protocol-level simulator of XenAPI (XML-RPC envelopes, error codes, preconditions,
pool membership, HA with liveness and self-fencing, records with every field of xapi's datamodel), one endpoint
per host, driven through the official SDK.

    from stackops_lab.xenapi import XenLab, XenHostSpec, XenTimings
"""

from stackops_lab.xenapi.errors import XapiError
from stackops_lab.xenapi.simulator import XenHostSpec, XenLab
from stackops_lab.xenapi.timings import XenTimings

__all__ = ["XapiError", "XenHostSpec", "XenLab", "XenTimings"]
