"""The pure parts of the maintenance lock (drivers/maintenance_lock.py): slot names and when a slot is free. The
lock itself is tested against a real kube-apiserver in tests/integration/test_maintenance_lock.py."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from stackops.drivers.maintenance_lock import group_key, is_free, micro_time, slot_name

NOW = datetime(2026, 12, 7, 19, 0, 0, 123456, tzinfo=timezone.utc)
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def test_slot_names_number_the_slots_of_a_group() -> None:
    assert [slot_name("cluster-1", n) for n in range(3)] == [
        "stackops-maintenance-cluster-1-0", "stackops-maintenance-cluster-1-1", "stackops-maintenance-cluster-1-2"]


def test_a_group_that_must_change_to_fit_a_name_gets_a_hash_and_never_meets_another() -> None:
    groups = ["Cluster_1", "cluster-1", "cluster 1", "CLUSTER-1", "c" * 200, "c" * 201, "!!!", "zone1/pod2/cl3"]
    keys = [group_key(g) for g in groups]
    assert len(set(keys)) == len(groups)
    for key in keys:
        assert DNS_LABEL.match(key) and len(key) <= 36, key
        assert DNS_LABEL.match(slot_name("x" * 300, 999)) and len(slot_name("x" * 300, 999)) <= 63
    assert group_key("cluster-1") == "cluster-1"
    assert group_key("Cluster_1").startswith("cluster-1-")


def test_a_slot_is_free_without_holder_or_once_its_ttl_is_past() -> None:
    renewed = NOW - timedelta(seconds=60)
    assert is_free(None, renewed, 120, NOW)
    assert is_free("", renewed, 120, NOW)
    assert is_free("ns/host", None, 120, NOW)
    assert is_free("ns/host", renewed, None, NOW)
    assert not is_free("ns/host", renewed, 120, NOW)
    assert not is_free("ns/host", renewed, 61, NOW)
    assert is_free("ns/host", renewed, 60, NOW)  # renewTime + TTL reached: expired
    assert is_free("ns/host", renewed, 59, NOW)


def test_micro_time_is_utc_with_microseconds() -> None:
    assert micro_time(NOW) == "2026-12-07T19:00:00.123456Z"
    assert micro_time(NOW.astimezone(timezone(timedelta(hours=2)))) == "2026-12-07T19:00:00.123456Z"
