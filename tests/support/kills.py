"""Killing the operator at a series of points during one request (the SIGKILL e2e tests of XenPool and KvmHost):
each point either a step the test's killer arms (it kills the operator from inside the lab as the step happens,
then sets `killer.done`) or None, a random moment within `window` seconds of the operator's (re)start."""
from __future__ import annotations

import random
import time
from typing import Any, Callable, Sequence

from support.wait import wait_for


def kill_series(points: Sequence[Any], *, begin: Callable[[], None], operator: Any, killer: Any,
                killed: Callable[[], bool], rng: random.Random, window: float, timeout: float,
                where_random: Callable[[], str] = lambda: "random",
                landed: Callable[[Any, str], None] = lambda point, where: None) -> None:
    """`begin()` starts the request (the first point's operator is already running); before each later point the
    operator is started again (without waiting for its health checks when the kill is armed: it may land first).
    `killed()` says whether the armed kill landed (and may fail the test when the work stopped); `landed(point,
    where)` is told where each kill landed."""
    for index, point in enumerate(points):
        if point is not None:
            killer.arm(point)
        if index == 0:
            begin()
        else:
            operator.start(wait=point is None)
        if point is not None:
            wait_for(killed, timeout=timeout, what=f"{point}", interval=0.1)
            landed(point, str(point))
        else:
            time.sleep(rng.uniform(0.0, window))
            operator.kill()
            landed(point, where_random())
