"""The maintenance lock of a group of hosts (by default their CloudStack cluster): at most `max_unavailable` hosts
of a group in maintenance at once, each holding one slot, a Kubernetes Lease (coordination.k8s.io/v1).

- Slots: Lease `stackops-maintenance-<group>-<n>`, n = 0 .. max_unavailable - 1 (`slot_name`), labelled
  `stackops.io/maintenance-group=<group>` so that `held` finds them with one list.
- Namespace: the KvmHost's own. The namespaced installation (deploy/namespaced/) grants the operator nothing in
  its own namespace, and the operator does not need to know which namespace it runs in; a group is therefore
  a group of hosts of one namespace.
- Taking a slot is optimistic: create the Lease when absent, patch it when free with its resourceVersion as a
  precondition; the API server answers 409 Conflict to the loser of a race, who tries the next slot. Nothing is
  ever held by two holders: the API server serialises the writes of one Lease.
- A slot is free when it has no holder or its `renewTime + leaseDurationSeconds` is past (`is_free`): a holder
  that vanished (its KvmHost deleted, the operator gone) stops renewing and its slot expires (kured #137/#847).
- The record (the host's state before maintenance, the request) is JSON in the Lease's annotation
  `stackops.io/maintenance`; holderIdentity is the KvmHost's `namespace/name`.
- Time and clock skew: renewTime (a MicroTime) is written from this module's clock and compared with the same
  clock; the API server keeps no time of its own in a Lease. The operator runs as one replica (kopf peering), so
  writer and reader share one clock; were two operators with different clocks to share a group, their skew must
  stay well under the TTL (a clock ahead by `skew` sees others' slots expire `skew` early). The clock is a
  parameter for tests.

Blocking calls (run them through `kube.call`); verbs used: get, list, create, patch (no update, no delete: a
released slot stays as a Lease without a holder, at most max_unavailable of them per group).
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

ANNOTATION = "stackops.io/maintenance"
GROUP_LABEL = "stackops.io/maintenance-group"
PREFIX = "stackops-maintenance-"
_GROUP_KEY_LENGTH = 36  # the group's part of a Lease name and the label value: a name within 63 characters
_MERGE_PATCH = "application/merge-patch+json"

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class MaintenanceLockError(Exception):
    """The API server refused a Lease call for another reason than a lost race (403, 404 of the namespace, 5xx):
    `status` is its HTTP status (0 when there was no answer)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Slot:
    """One slot held: the Lease `namespace/name` of `group`, its resourceVersion when we last wrote it, and the
    record stored with it."""

    namespace: str
    name: str
    group: str
    holder: str
    ttl_seconds: int
    resource_version: str
    renewed: datetime
    record: dict[str, Any]

    @property
    def expires(self) -> datetime:
        return self.renewed + timedelta(seconds=self.ttl_seconds)


@dataclass(frozen=True)
class Holding:
    """A slot of a group with a holder, as `held` reads it; `expired`: past its TTL, free for anyone to take."""

    name: str
    holder: str
    renewed: datetime | None
    ttl_seconds: int
    expired: bool
    record: dict[str, Any]


def group_key(group: str) -> str:
    """The group as it goes into a Lease name and a label value: lowercase letters, digits and '-'; a group that
    had to be changed to fit (or shortened) gets 8 hex digits of its SHA-256, so two groups never share a key."""
    key = re.sub(r"[^a-z0-9-]+", "-", group.lower()).strip("-")
    if key == group and len(key) <= _GROUP_KEY_LENGTH:
        return key
    digest = hashlib.sha256(group.encode()).hexdigest()[:8]
    return f"{key[:_GROUP_KEY_LENGTH - 9].rstrip('-')}-{digest}".lstrip("-")


def slot_name(group: str, n: int) -> str:
    """Lease name of slot `n` of `group`: `stackops-maintenance-<group>-<n>`."""
    return f"{PREFIX}{group_key(group)}-{n}"


def is_free(holder: str | None, renewed: datetime | None, ttl_seconds: int | None, now: datetime) -> bool:
    """A slot is free with no holder, no renewal time or TTL, or once `renewed + ttl_seconds` is not after `now`."""
    if not holder or renewed is None or not ttl_seconds:
        return True
    return renewed + timedelta(seconds=ttl_seconds) <= now


def micro_time(moment: datetime) -> str:
    """A MicroTime as the API server writes it: UTC, microseconds, `Z`."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def coordination_api() -> Any:
    """A CoordinationV1Api configured like `kube.core_api()` (call that first)."""
    from kubernetes import client

    return client.CoordinationV1Api()


class MaintenanceLocks:
    """The maintenance slots of the groups of one namespace, through a CoordinationV1Api
    (`coordination_api()`); `clock` gives the time renewTime is written with and compared to."""

    def __init__(self, coordination_api: Any, namespace: str, clock: Clock = utc_now):
        self._api = coordination_api
        self.namespace = namespace
        self._clock = clock

    def acquire(self, group: str, holder: str, ttl_seconds: int, max_unavailable: int,
                record: dict[str, Any]) -> Slot | None:
        """One of the `max_unavailable` slots of `group` for `holder`, or None when all are held (or lost to
        another holder in a race). Non-blocking. A holder that already holds a live slot of the group gets it back
        as it is, with the record it stored then (an operator restarted mid-maintenance keeps the state from before
        it); `record` is then not written. Holders of slots beyond `max_unavailable` (it was lowered) count too."""
        if max_unavailable < 1 or ttl_seconds < 1:
            raise ValueError("max_unavailable and ttl_seconds must be at least 1")
        now = self._clock()
        leases = {lease.metadata.name: lease for lease in self._list(group)}
        live = [lease for lease in leases.values() if not _free(lease, now)]
        for lease in live:
            if lease.spec.holder_identity == holder:
                return self._slot(lease, group)
        if len(live) >= max_unavailable:
            return None
        for n in range(max_unavailable):
            name = slot_name(group, n)
            lease = leases.get(name)
            if lease is not None and not _free(lease, now):
                continue
            body = self._body(name, group, holder, ttl_seconds, record, now)
            if lease is None:
                written = self._write(self._api.create_namespaced_lease, self.namespace, body)
            else:
                body["metadata"]["resourceVersion"] = lease.metadata.resource_version
                written = self._patch(name, body)
            if written is not None:
                return self._slot(written, group)
        return None

    def renew(self, slot: Slot) -> Slot | None:
        """`slot` renewed from now for its TTL, or None when it is no longer ours (expired and taken)."""
        lease = self._get(slot.name)
        if lease is None or lease.spec.holder_identity != slot.holder:
            return None
        patch = {"metadata": {"resourceVersion": lease.metadata.resource_version},
                 "spec": {"renewTime": micro_time(self._clock())}}
        written = self._patch(slot.name, patch)
        return None if written is None else self._slot(written, slot.group)

    def release(self, slot: Slot) -> bool:
        """Free `slot` if `slot.holder` still holds it (holder and record removed); False, and nothing written,
        when someone else holds it now."""
        lease = self._get(slot.name)
        if lease is None or lease.spec.holder_identity != slot.holder:
            return False
        patch = {"metadata": {"resourceVersion": lease.metadata.resource_version, "annotations": {ANNOTATION: None}},
                 "spec": {"holderIdentity": None, "acquireTime": None, "renewTime": None}}
        return self._patch(slot.name, patch) is not None

    def held(self, group: str) -> list[Holding]:
        """The slots of `group` with a holder, by name, expired ones included (`expired` True)."""
        now = self._clock()
        holdings = []
        for lease in sorted(self._list(group), key=lambda lease: lease.metadata.name):
            if lease.spec.holder_identity:
                holdings.append(Holding(
                    name=lease.metadata.name, holder=lease.spec.holder_identity, renewed=lease.spec.renew_time,
                    ttl_seconds=lease.spec.lease_duration_seconds or 0, expired=_free(lease, now),
                    record=_record(lease)))
        return holdings

    # --- API calls ---------------------------------------------------------------------------------------------

    def _body(self, name: str, group: str, holder: str, ttl_seconds: int, record: dict[str, Any],
              now: datetime) -> dict[str, Any]:
        return {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": self.namespace,
                         "labels": {GROUP_LABEL: group_key(group), "app.kubernetes.io/part-of": "stackops"},
                         "annotations": {ANNOTATION: json.dumps(record, sort_keys=True)}},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": ttl_seconds,
                     "acquireTime": micro_time(now), "renewTime": micro_time(now)},
        }

    def _slot(self, lease: Any, group: str) -> Slot:
        return Slot(namespace=self.namespace, name=lease.metadata.name, group=group,
                    holder=lease.spec.holder_identity, ttl_seconds=lease.spec.lease_duration_seconds,
                    resource_version=lease.metadata.resource_version, renewed=lease.spec.renew_time,
                    record=_record(lease))

    def _list(self, group: str) -> list[Any]:
        result = self._call(self._api.list_namespaced_lease, self.namespace,
                            label_selector=f"{GROUP_LABEL}={group_key(group)}")
        return list(result.items)

    def _get(self, name: str) -> Any:
        from kubernetes.client.exceptions import ApiException

        try:
            return self._api.read_namespaced_lease(name, self.namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise _error(error, f"reading Lease {self.namespace}/{name}") from None

    def _patch(self, name: str, patch: dict[str, Any]) -> Any:
        """`patch` (a JSON merge patch with the resourceVersion read as its precondition) applied to Lease `name`."""
        return self._write(self._api.patch_namespaced_lease, name, self.namespace, patch, _content_type=_MERGE_PATCH)

    def _write(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """The Lease `method` wrote, or None when another writer came first (409: it exists already, or its
        resourceVersion changed since we read it)."""
        from kubernetes.client.exceptions import ApiException

        try:
            return method(*args, **kwargs)
        except ApiException as error:
            if error.status == 409:
                return None
            raise _error(error, f"writing Lease in {self.namespace}") from None

    def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException

        try:
            return method(*args, **kwargs)
        except ApiException as error:
            raise _error(error, f"listing Leases in {self.namespace}") from None


def _free(lease: Any, now: datetime) -> bool:
    spec = lease.spec
    return is_free(spec.holder_identity, spec.renew_time, spec.lease_duration_seconds, now)


def _record(lease: Any) -> dict[str, Any]:
    text = (lease.metadata.annotations or {}).get(ANNOTATION)
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _error(error: Any, doing: str) -> MaintenanceLockError:
    status = int(error.status or 0)
    return MaintenanceLockError(status, f"{doing} failed: HTTP {status} {error.reason or ''}".rstrip())
