"""The maintenance lock (drivers/maintenance_lock.py) against the real kube-apiserver of the `kube` fixture:
Leases created, taken and freed by the API server's own optimistic concurrency (resourceVersion, 409 Conflict).
Time is a manual clock shared by the contenders: expiry is tested without waiting on the wall clock."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator

import pytest
from kubernetes import client as kube_client
from kubernetes import config as kube_config
from kubernetes.client.exceptions import ApiException
from support.kube import Kube

from stackops_lab import operator as lab_operator

from stackops.drivers.maintenance_lock import ANNOTATION, MaintenanceLocks, Slot, slot_name

TTL = 60
RECORD = {"resourceState": "Enabled", "request": {"reason": "agent 4.19.1", "generation": 3}}


class ManualClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 7, 12, 0, 0, 250000, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def namespace(kube: Kube) -> Iterator[str]:
    with kube.scratch_namespace("lock") as name:
        yield name


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def locks(kube: Kube, namespace: str, clock: ManualClock) -> Callable[[], MaintenanceLocks]:
    """A new MaintenanceLocks with an API client of its own (one per contender), on the shared manual clock."""
    def new() -> MaintenanceLocks:
        api = kube_client.CoordinationV1Api(kube_config.new_client_from_config(config_file=kube.kubeconfig))
        return MaintenanceLocks(api, namespace, clock)
    return new


def lease(kube: Kube, namespace: str, name: str) -> Any:
    api = kube_client.CoordinationV1Api(kube_config.new_client_from_config(config_file=kube.kubeconfig))
    return api.read_namespaced_lease(name, namespace)


def test_two_contenders_for_one_slot_one_wins_the_other_after_release(
        kube: Kube, namespace: str, locks: Callable[[], MaintenanceLocks]) -> None:
    first, second = locks(), locks()
    won = first.acquire("cluster-1", f"{namespace}/kvm1", TTL, 1, RECORD)
    assert won is not None and won.name == slot_name("cluster-1", 0) and won.holder == f"{namespace}/kvm1"
    assert second.acquire("cluster-1", f"{namespace}/kvm2", TTL, 1, {"resourceState": "Disabled"}) is None
    assert [h.holder for h in second.held("cluster-1")] == [f"{namespace}/kvm1"]
    assert second.acquire("cluster-2", f"{namespace}/kvm2", TTL, 1, {}) is not None  # another group: its own slots

    assert first.release(won) is True
    assert second.held("cluster-1") == []
    after = second.acquire("cluster-1", f"{namespace}/kvm2", TTL, 1, {"resourceState": "Disabled"})
    assert after is not None and after.name == won.name and after.record == {"resourceState": "Disabled"}
    stored = lease(kube, namespace, won.name)
    assert stored.spec.holder_identity == f"{namespace}/kvm2" and stored.spec.lease_duration_seconds == TTL


def test_max_unavailable_two_gives_two_slots_and_refuses_a_third(locks: Callable[[], MaintenanceLocks]) -> None:
    lock = locks()
    a = lock.acquire("g", "ns/a", TTL, 2, {})
    b = lock.acquire("g", "ns/b", TTL, 2, {})
    assert a is not None and b is not None and {a.name, b.name} == {slot_name("g", 0), slot_name("g", 1)}
    assert lock.acquire("g", "ns/c", TTL, 2, {}) is None
    assert [h.holder for h in lock.held("g")] == ["ns/a", "ns/b"]
    # max_unavailable lowered to 1 while two hold: nobody else gets in, even on the first slot once it is free
    assert lock.release(a)
    assert lock.acquire("g", "ns/c", TTL, 1, {}) is None
    assert lock.release(b)
    assert lock.acquire("g", "ns/c", TTL, 1, {}) is not None


def test_a_holder_asking_again_gets_its_slot_back_with_its_first_record(locks: Callable[[], MaintenanceLocks]) -> None:
    lock = locks()
    first = lock.acquire("g", "ns/a", TTL, 2, {"resourceState": "Disabled"})
    again = lock.acquire("g", "ns/a", TTL, 2, {"resourceState": "Enabled"})  # e.g. an operator restarted
    assert again is not None and first is not None
    assert again.name == first.name and again.record == {"resourceState": "Disabled"}
    assert len(lock.held("g")) == 1


def test_an_expired_slot_is_taken_over_and_its_old_holder_can_neither_renew_nor_release(
        locks: Callable[[], MaintenanceLocks], clock: ManualClock) -> None:
    gone, other = locks(), locks()
    old = gone.acquire("g", "ns/vanished", TTL, 1, {"resourceState": "Enabled"})
    assert old is not None
    clock.advance(TTL - 1)
    assert other.acquire("g", "ns/b", TTL, 1, {}) is None  # still held, a second before its end
    clock.advance(1)
    [holding] = other.held("g")
    assert holding.holder == "ns/vanished" and holding.expired and holding.record == {"resourceState": "Enabled"}
    taken = other.acquire("g", "ns/b", TTL, 1, {"resourceState": "Disabled"})
    assert taken is not None and taken.name == old.name and taken.renewed == clock.now
    assert gone.renew(old) is None
    assert gone.release(old) is False
    [holding] = other.held("g")
    assert holding.holder == "ns/b" and not holding.expired and holding.record == {"resourceState": "Disabled"}


def test_release_by_a_non_holder_changes_nothing(
        kube: Kube, namespace: str, locks: Callable[[], MaintenanceLocks]) -> None:
    lock = locks()
    mine = lock.acquire("g", "ns/a", TTL, 1, RECORD)
    assert mine is not None
    before = lease(kube, namespace, mine.name)
    impostor = Slot(**{**mine.__dict__, "holder": "ns/b"})
    assert lock.release(impostor) is False
    after = lease(kube, namespace, mine.name)
    assert after.metadata.resource_version == before.metadata.resource_version
    assert after.spec.holder_identity == "ns/a"


def test_renew_extends_the_slot_from_now(locks: Callable[[], MaintenanceLocks], clock: ManualClock) -> None:
    lock, other = locks(), locks()
    slot = lock.acquire("g", "ns/a", TTL, 1, RECORD)
    assert slot is not None
    clock.advance(TTL - 10)
    renewed = lock.renew(slot)
    assert renewed is not None and renewed.renewed == clock.now and renewed.expires == clock.now + timedelta(seconds=TTL)
    assert renewed.record == RECORD and renewed.resource_version != slot.resource_version
    clock.advance(TTL - 1)  # past the first TTL, within the renewed one
    assert other.acquire("g", "ns/b", TTL, 1, {}) is None
    assert not other.held("g")[0].expired
    clock.advance(1)
    assert other.acquire("g", "ns/b", TTL, 1, {}) is not None


def test_the_record_round_trips_as_json_in_the_lease_annotation(
        kube: Kube, namespace: str, locks: Callable[[], MaintenanceLocks]) -> None:
    lock = locks()
    record = {**RECORD, "text": "é \"quoted\" \n", "hosts": ["a", "b"], "n": 1.5, "none": None}
    slot = lock.acquire("Zone 1/Cluster_A", f"{namespace}/kvm1", TTL, 1, record)
    assert slot is not None and slot.record == record
    stored = lease(kube, namespace, slot.name)
    assert stored.metadata.name == slot_name("Zone 1/Cluster_A", 0)
    assert ANNOTATION in stored.metadata.annotations
    assert stored.spec.renew_time.microsecond == 250000  # MicroTime kept to the microsecond
    assert [h.record for h in locks().held("Zone 1/Cluster_A")] == [record]
    assert lock.release(slot)
    assert ANNOTATION not in (lease(kube, namespace, slot.name).metadata.annotations or {})


@pytest.mark.parametrize("max_unavailable", [1, 2])
def test_concurrent_acquires_never_give_one_slot_to_two_holders(
        locks: Callable[[], MaintenanceLocks], max_unavailable: int) -> None:
    contenders, rounds = 6, 25
    clients = [locks() for _ in range(contenders)]
    barrier = threading.Barrier(contenders)
    results: list[list[Slot | None]] = [[None] * contenders for _ in range(rounds)]
    errors: list[BaseException] = []

    def contend(i: int) -> None:
        try:
            for r in range(rounds):
                barrier.wait()
                results[r][i] = clients[i].acquire("race", f"ns/host{i}", TTL, max_unavailable, {"round": r, "i": i})
                barrier.wait()
                # every contender's acquire of this round is done: check, then the winners release
                if i == 0:
                    winners = [s for s in results[r] if s is not None]
                    held = clients[0].held("race")
                    assert sorted(h.holder for h in held) == sorted(s.holder for s in winners)
                    assert [h.record for h in held] == [s.record for s in sorted(winners, key=lambda s: s.name)]
                barrier.wait()
                slot = results[r][i]
                if slot is not None:
                    assert clients[i].release(slot)
                barrier.wait()
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)
            barrier.abort()

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    for r, row in enumerate(results):
        winners = [s for s in row if s is not None]
        names = [s.name for s in winners]
        assert len(names) == len(set(names)), f"round {r}: one slot given twice: {winners}"
        assert len(winners) == max_unavailable, f"round {r}: {len(winners)} winners"


def test_the_operators_service_account_may_take_renew_and_free_a_slot(
        kube: Kube, namespace: str, clock: ManualClock) -> None:
    """deploy/'s ClusterRole, for real: the lock run with the operator's ServiceAccount token, not as admin."""
    lab_operator.install(kube.kubeconfig)
    configuration = kube_client.Configuration()
    kube_config.load_kube_config(config_file=kube.kubeconfig, client_configuration=configuration)
    configuration.cert_file = configuration.key_file = None
    configuration.refresh_api_key_hook = None  # it would put the kubeconfig's admin token back
    configuration.api_key = {"authorization": f"Bearer {kube.service_account_token('stackops-system', 'stackops-operator')}"}
    api = kube_client.CoordinationV1Api(kube_client.ApiClient(configuration))
    lock = MaintenanceLocks(api, namespace, clock)
    slot = lock.acquire("g", f"{namespace}/kvm1", TTL, 1, RECORD)
    assert slot is not None
    clock.advance(TTL)
    assert [h.expired for h in lock.held("g")] == [True]
    assert lock.acquire("g", f"{namespace}/kvm2", TTL, 1, {}) is not None  # an expired slot taken: a patch
    assert lock.renew(slot) is None and lock.release(slot) is False
    [holding] = lock.held("g")
    assert lock.release(Slot(**{**slot.__dict__, "holder": holding.holder})) is True
    with pytest.raises(ApiException) as refused:  # the token is the one used, and it may not delete
        api.delete_namespaced_lease(slot.name, namespace)
    assert refused.value.status == 403
