"""How long things take in the lab XenServer pool, and the HA time scale.

HA timeouts come from the pool's `ha_configuration["timeout"]` in seconds (as xapi's
Xapi_ha.Timeouts.derive uses them: a host is declared dead `t` seconds after it stops heart-beating, and a
booting host gets `t + 60` seconds — boot_join_timeout — to join the liveset before it fences). The lab
multiplies them by `ha_time_scale` (default 0.01), so `timeout=180` takes 1.8 s and a boot-join 2.4 s.
Everything else is in lab seconds as given.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class XenTimings:
    ha_enable: float = 0.5  # pool.enable_ha: statefile, arming every host, forming the liveset
    ha_disable: float = 0.3  # pool.disable_ha
    join: float = 0.5  # pool.join: the joiner's xapi restarts as a supporter (not live on the master until then)
    eject_reboot: float = 1.0  # pool.eject: the ejected host resets and reboots (down for this long)
    master_transition: float = 0.5  # pool.designate_new_master: the two-phase commit and xapi restarts
    fence: float = 1.0  # a fenced host is down this long before it boots again
    host_boot: float = 1.0  # a revived host boots (down) this long before xapi answers
    xapi_restart: float = 0.3  # `service xapi restart`, emergency transitions: HOST_STILL_BOOTING meanwhile
    liveness: float = 0.5  # without HA: a dead host's host_metrics.live turns false after this long
    ha_time_scale: float = 0.01  # lab seconds per second of HA timeout
    session_idle: float = 3600.0  # an unused session expires (xapi: 24 h); SESSION_INVALID afterwards
    tick: float = 0.05  # how often the liveness/HA monitor looks
    vm_migrate: float = 0.2  # one live migration (VM.pool_migrate; host.evacuate runs batches of them at once)
    shutdown_delay: float = 0.5  # host.reboot / host.shutdown return, and act this long after (xapi: 10 s)
    reboot_down: float = 1.0  # a host rebooted by host.reboot is down this long (then host_boot until xapi answers)
    update_apply: float = 0.0  # pool_update.apply / pool_patch.apply: the host installs the update (xapi: minutes)

    def ha_seconds(self, timeout: int) -> float:
        return timeout * self.ha_time_scale

    def boot_join_seconds(self, timeout: int) -> float:
        return (timeout + 60) * self.ha_time_scale
