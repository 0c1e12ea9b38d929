"""The SSH driver as the reconcilers use it: the target a spec's `ssh` block and its key name, and the driver's
failures (SSHError, with its reason, retry and delay) as the engine's ReconcileError. The driver knows neither the
spec's models nor the engine: it takes plain values and raises its own errors."""
from __future__ import annotations

from pydantic import SecretStr

from ..api.common import SSHSettings
from ..drivers.ssh import SSHError, SSHTarget
from .base import ReconcileError


def target_for(address: str, settings: SSHSettings, private_key: SecretStr) -> SSHTarget:
    """From a spec's `ssh` block and the value of its `privateKeySecretRef`."""
    return SSHTarget(address=address, port=settings.port, user=settings.user, host_key=settings.host_key,
                     private_key=private_key, sudo=settings.sudo,
                     connect_timeout=float(settings.connect_timeout_seconds))


def reconcile_error(error: SSHError) -> ReconcileError:
    """The same failure as the reconcile engine's typed error: its reason, message, retry and delay."""
    return ReconcileError(error.reason, str(error), retry=error.retry, delay=error.delay)
