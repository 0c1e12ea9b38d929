"""Virtual routers at run time: reboot, template selection, redundant failover.

Mirrors CloudStack:
- rebootRouter (VirtualNetworkApplianceManagerImpl.rebootRouter) only reboots a Running router, otherwise
  the job fails with the ResourceUnavailableException text "Resource [DataCenter:<id>] is unreachable: Unable to
  reboot domR, it is not in right state <state>"; a reboot is a stop and a start;
- on start a router boots the template named by its zone's `router.template.<hypervisor>`
  (VMTemplateDao.findRoutingTemplate: ROUTING templates first, then SYSTEM, newest first) and from then on
  reports that template's version; here the template must be READY in the router's zone, otherwise the
  job fails (530) and the router comes back on its old template;
- upgradeRouterTemplate reboots the routers for which NetworkHelper.checkRouterVersion is false (no recorded
  version, or version < minreq.sysvmtemplate.version; always true when router.version.check is false);
- redundant pairs (keepalived): when the PRIMARY goes down the BACKUP takes over; a router that comes back
  while its peer is PRIMARY becomes BACKUP. Both members down at once is recorded as `pair.both_down`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stackops_lab.cloudstack import responses, versions
from stackops_lab.cloudstack.errors import INTERNAL_ERROR
from stackops_lab.cloudstack.jobs import Job, JobContext
from stackops_lab.cloudstack.state import Account, Router, Template

if TYPE_CHECKING:
    from stackops_lab.cloudstack.simulator import CloudStackSimulator

REBOOT_CMD = "org.apache.cloudstack.api.command.admin.router.RebootRouterCmd"
NOT_FOUND = "Can't find router by id"  # StopRouterCmd/StartRouterCmd: findRouter is null (removed) or not a VR


class RouterOps:
    def __init__(self, sim: CloudStackSimulator) -> None:
        self.sim = sim

    # ------------------------------------------------------------------ queries
    def needs_upgrade(self, router: Router) -> bool:
        """!NetworkHelper.checkRouterVersion(router)."""
        state = self.sim.state
        if state.config_value("router.version.check") == "false":
            return False
        minimum = state.config_value("minreq.sysvmtemplate.version", router.zone) or "0"
        return versions.requires_upgrade(router.version, minimum)

    def boot_template(self, router: Router) -> tuple[Template | None, str]:
        """The template a starting router boots, or None and why not."""
        state = self.sim.state
        key = f"router.template.{router.hypervisor.lower()}"
        name = state.config_value(key, router.zone)
        candidates = [t for t in state.values("template")
                      if t.name == name and t.hypervisor.lower() == router.hypervisor.lower()
                      and t.template_type in ("ROUTING", "SYSTEM")]
        candidates.sort(key=lambda t: (t.template_type == "ROUTING", t.db_id), reverse=True)
        for template in candidates:
            if router.zone is not None and template.ready_in(router.zone):
                return template, ""
        assert router.zone is not None
        if not candidates:
            return None, (f"Failed to start router {router.name}: no {router.hypervisor} template named {name!r} "
                          f"({key} in zone {router.zone.name}) exists")
        return None, (f"Failed to start router {router.name}: template {name!r} ({key}) is not ready in zone "
                      f"{router.zone.name}")

    # ------------------------------------------------------------------ state changes
    def set_state(self, router: Router, new: str) -> None:
        old = router.state
        if old == new:
            return
        router.state = new
        audit = self.sim.audit_log
        audit.record("router.state", router=router.uuid, name=router.name, pair=router.pair_key,
                     zone=router.zone.uuid if router.zone else None, **{"from": old, "to": new})
        peer = router.peer if router.redundant else None
        if peer is None:
            return
        if old == "Running" and new != "Running":
            was = router.redundant_state
            self.set_role(router, "UNKNOWN")
            if peer.state != "Running":
                audit.record("pair.both_down", pair=router.pair_key, routers=[router.uuid, peer.uuid],
                             names=[router.name, peer.name], zone=router.zone.uuid if router.zone else None)
            elif was == "PRIMARY" or peer.redundant_state != "PRIMARY":
                self.set_role(peer, "PRIMARY")
        elif new == "Running":
            peer_primary = peer.state == "Running" and peer.redundant_state == "PRIMARY"
            self.set_role(router, "BACKUP" if peer_primary else "PRIMARY")

    def set_role(self, router: Router, role: str) -> None:
        if router.redundant_state == role:
            return
        old, router.redundant_state = router.redundant_state, role
        self.sim.audit_log.record("router.redundant", router=router.uuid, name=router.name, pair=router.pair_key,
                                  **{"from": old, "to": role})

    # ------------------------------------------------------------------ reboot
    def submit_reboot(self, router: Router, account: Account, user_uuid: str) -> Job:
        return self.sim.jobs.submit(REBOOT_CMD, account, user_uuid, "DomainRouter", router.uuid,
                                    lambda ctx: self.reboot(ctx, router))

    def reboot(self, ctx: JobContext, router: Router) -> None:
        sim = self.sim
        if not sim.state.live(router):
            ctx.fail(431, f"Unable to find domain router with id {router.db_id}.")
            return
        if router.state != "Running":
            zone_id = router.zone.db_id if router.zone else 0
            ctx.fail(INTERNAL_ERROR, f"Resource [DataCenter:{zone_id}] is unreachable: Unable to reboot domR, it is "
                                     f"not in right state {router.state}")
            return
        sim.audit_log.record("router.reboot.start", router=router.uuid, name=router.name, pair=router.pair_key,
                             zone=router.zone.uuid if router.zone else None, job=ctx.job.uuid,
                             version=router.version, redundantstate=router.redundant_state)
        self.set_state(router, "Stopping")
        duration = sim.timings.router_reboot
        ctx.later(duration / 3, lambda: self.set_state(router, "Stopped"))
        ctx.later(duration * 2 / 3, lambda: self.set_state(router, "Starting"))
        ctx.later(duration, lambda: self.come_back(ctx, router))

    def come_back(self, ctx: JobContext, router: Router) -> None:
        failing = self.sim.faults.failing_routers
        if ctx.injected_failure or router.name in failing or router.uuid in failing:
            error = f"Failed to reboot router {router.name}"
        else:
            template, error = self.boot_template(router)
            if template is not None:
                router.template = template
                router.version = template.version
        self.set_state(router, "Running")
        self.sim.audit_log.record("router.reboot.end", router=router.uuid, name=router.name, pair=router.pair_key,
                                  zone=router.zone.uuid if router.zone else None, job=ctx.job.uuid,
                                  ok=not error, version=router.version,
                                  template=router.template.uuid if router.template else None, error=error or None)
        if error:
            ctx.fail(INTERNAL_ERROR, error)
        else:
            ctx.succeed({"router": responses.router(self.sim.state, router)})

    # ------------------------------------------------------------------ stop, start, destroy
    def stop(self, ctx: JobContext, router: Router) -> None:
        """stopRouter: a Running router goes Stopping → Stopped (its host let go); a Stopped one stays so
        (VirtualMachineManagerImpl.advanceStop of a stopped VM is a no-op). The answer is the router."""
        if not self.sim.state.live(router):
            ctx.fail(431, NOT_FOUND)
            return
        if router.state == "Stopped":
            ctx.succeed({"router": responses.router(self.sim.state, router)})
            return
        self.set_state(router, "Stopping")

        def stopped() -> None:
            self.set_state(router, "Stopped")
            ctx.succeed({"router": responses.router(self.sim.state, router)})

        ctx.later(self.sim.timings.router_reboot / 2, stopped)

    def start(self, ctx: JobContext, router: Router) -> None:
        """startRouter: a Stopped router boots the template its zone's router.template.<hv> names (as after a
        reboot); a Running one answers as it is."""
        if not self.sim.state.live(router):
            ctx.fail(431, NOT_FOUND)
            return
        if router.state == "Running":
            ctx.succeed({"router": responses.router(self.sim.state, router)})
            return
        self.set_state(router, "Starting")

        def started() -> None:
            template, error = self.boot_template(router)
            if template is None:
                self.set_state(router, "Stopped")
                ctx.fail(INTERNAL_ERROR, error)
                return
            router.template, router.version = template, template.version
            self.set_state(router, "Running")
            ctx.succeed({"router": responses.router(self.sim.state, router)})

        ctx.later(self.sim.timings.router_reboot / 2, started)

    def destroy(self, ctx: JobContext, router: Router) -> None:
        """destroyRouter: stopped and expunged; listRouters no longer finds it (its peer takes over)."""
        if not self.sim.state.live(router):
            ctx.fail(431, f"Unable to find router by id {router.db_id}.")
            return
        self.set_state(router, "Stopping")

        def destroyed() -> None:
            self.set_state(router, "Stopped")
            self.set_state(router, "Expunging")
            result = {"router": responses.router(self.sim.state, router)}
            if router.peer is not None:
                router.peer.peer = None
            self.sim.state.remove(router)
            self.sim.audit_log.record("router.destroyed", router=router.uuid, name=router.name)
            ctx.succeed(result)

        ctx.later(self.sim.timings.router_reboot / 2, destroyed)
