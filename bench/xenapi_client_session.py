#!/usr/bin/env python3
"""Drive the lab XenAPI simulator through a third-party client the project does not control: Ansible's
community.general XenServer module_utils (ansible_collections/community/general/plugins/module_utils/xenserver.py,
what the xenserver_guest, xenserver_guest_info and xenserver_guest_powerstate modules run), over the official
`XenAPI` SDK. A realistic session against a two-host pool: connect as the modules do (XenServerObject: pool,
default SR, product version), list VMs, hosts, SRs and networks with their full records, inspect every guest with
gather_vm_params / gather_vm_facts (VM, VBD, VDI, SR, VIF, network and guest-metrics records: dozens of fields),
change a VM (name_label, other_config "folder") and undo it, power a VM off and on again (set_vm_power_state:
VM.hard_shutdown, VM.start; shutdownguest: Async.VM.clean_shutdown and the task calls). Prints one line per step,
PASS or FAIL, and exits 1 if a step failed.

Needs Ansible (community.general is part of the `ansible` package) and XenAPI, which the project does not depend on:
a throwaway venv, with the lab on the path:

    python3 -m venv /tmp/xenbench && /tmp/xenbench/bin/pip install ansible XenAPI
    PYTHONPATH=lab /tmp/xenbench/bin/python bench/xenapi_client_session.py

(or `pip install -e 'lab' ansible` into it; `pip install '.[xenapi-bench]'` names the same two packages).
"""
from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from typing import Any

try:
    from ansible_collections.community.general.plugins.module_utils import xenserver
except ImportError:
    sys.exit("community.general is not importable: install `ansible` and `XenAPI` (see this script's docstring)")

from stackops_lab.xenapi import XenHostSpec, XenLab

RESULTS: list[tuple[str, bool, str]] = []


class ModuleFailed(Exception):
    pass


class Module:
    """What the module_utils use of an AnsibleModule: params, check_mode, fail_json."""

    def __init__(self, **params: Any) -> None:
        self.params = params
        self.check_mode = False

    def fail_json(self, **kwargs: Any) -> None:
        raise ModuleFailed(kwargs.get("msg", kwargs))


def step(name: str, run: Callable[[], str]) -> None:
    try:
        detail = run()
        RESULTS.append((name, True, detail))
        print(f"PASS  {name}: {detail}")
    except Exception as error:  # a client error (KeyError on a missing field …) is what this looks for
        RESULTS.append((name, False, repr(error)))
        print(f"FAIL  {name}: {error!r}")
        traceback.print_exc(limit=3)


def main() -> int:
    with XenLab(hosts=[XenHostSpec("xen1"), XenHostSpec("xen2")], pools=[["xen1", "xen2"]],
                password="s3cret") as lab:
        module = Module(hostname=lab.url("xen1"), username=lab.username, password=lab.password,
                        validate_certs=False)
        session = xenserver.XAPI.connect(module, disconnect_atexit=False)
        api = session.xenapi
        print(f"lab pool xen1+xen2 at {lab.url('xen1')}; client: community.general "
              f"{_version()} module_utils/xenserver.py over XenAPI")

        def connect() -> str:
            obj = xenserver.XenServerObject(module)
            return (f"pool {obj.pool_ref[:18]}…, default SR {api.SR.get_name_label(obj.default_sr_ref)!r}, "
                    f"XenServer {'.'.join(map(str, obj.xenserver_version))}")
        step("connect (XenServerObject)", connect)

        def listing() -> str:
            counts = []
            for cls in ("VM", "host", "SR", "network", "PIF", "VBD", "VIF", "VDI", "host_cpu", "VM_metrics",
                        "VM_guest_metrics", "console", "PBD", "host_metrics", "pool", "task", "message"):
                records = getattr(api, cls).get_all_records()
                fields = {len(record) for record in records.values()}
                counts.append(f"{cls} {len(records)}×{'/'.join(map(str, sorted(fields))) or '-'}")
            return "records×fields: " + ", ".join(counts)
        step("list every class with full records", listing)

        guests = sorted(vm["name_label"] for vm in api.VM.get_all_records().values()
                        if not vm["is_control_domain"] and not vm["is_a_template"])
        for name in guests:
            def inspect(name: str = name) -> str:
                ref = xenserver.get_object_ref(module, name, obj_type="VM")
                params = xenserver.gather_vm_params(module, ref)
                facts = xenserver.gather_vm_facts(module, params)
                disks = ", ".join(f"{d['os_device']} {d['size'] // 2**30} GiB on {d['sr']}" for d in facts["disks"])
                nets = ", ".join(f"{n['name']} {n['mac']} ip {n['ip'] or '-'}" for n in facts["networks"])
                return (f"{facts['state']}, {facts['hardware']['num_cpus']} vCPU, {facts['hardware']['memory_mb']}"
                        f" MiB, disks [{disks}], cdrom {facts['cdrom']}, networks [{nets}], agent "
                        f"{facts['customization_agent']}, {len(params)} VM fields read")
            step(f"inspect {name} (gather_vm_params/gather_vm_facts)", inspect)

        target = guests[0]
        ref = xenserver.get_object_ref(module, target, obj_type="VM")

        def change_and_undo() -> str:
            api.VM.set_name_label(ref, f"{target}-renamed")
            api.VM.add_to_other_config(ref, "folder", "/bench")
            facts = xenserver.gather_vm_facts(module, xenserver.gather_vm_params(module, ref))
            assert (facts["name"], facts["folder"]) == (f"{target}-renamed", "/bench"), facts
            api.VM.set_name_label(ref, target)
            api.VM.remove_from_other_config(ref, "folder")
            facts = xenserver.gather_vm_facts(module, xenserver.gather_vm_params(module, ref))
            assert (facts["name"], facts["folder"]) == (target, ""), facts
            return f"{target} renamed and filed in /bench, then back"
        step("change name_label and other_config, undo", change_and_undo)

        def power() -> str:
            seen = []
            for state in ("poweredoff", "poweredon", "shutdownguest", "poweredon"):
                changed, now = xenserver.set_vm_power_state(module, ref, state, timeout=30)
                seen.append(f"{state}→{now} (changed {changed})")
                facts = xenserver.gather_vm_facts(module, xenserver.gather_vm_params(module, ref))
                assert facts["state"] == ("poweredon" if state == "poweredon" else "poweredoff"), facts["state"]
            return ", ".join(seen)
        step("power off / on / guest shutdown / on (set_vm_power_state)", power)

        session.xenapi.session.logout()
    failed = [name for name, ok, _ in RESULTS if not ok]
    print(f"{len(RESULTS) - len(failed)}/{len(RESULTS)} steps passed" + (f"; failed: {failed}" if failed else ""))
    return 1 if failed else 0


def _version() -> str:
    try:
        from importlib.metadata import version
        return f"(ansible {version('ansible')})"
    except Exception:
        return ""


if __name__ == "__main__":
    sys.exit(main())
