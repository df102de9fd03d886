"""The routes' bounded pool: blocking work runs off the event loop, and a flood is refused with
a 429 naming what is busy instead of piling up (nodes/routes.py BoundedPool)."""
from __future__ import annotations

import asyncio
import sys
import threading

import pytest


@pytest.mark.timeout(30)
def test_work_beyond_the_limit_is_refused_with_a_429_until_a_slot_frees(pack):
    routes = sys.modules[f"{pack.__name__}.nodes.routes"]
    release = threading.Event()

    def blocking(value):
        release.wait()
        return value * 2

    async def scenario():
        pool = routes.BoundedPool(1, 2, "kubik-test", lambda count: f"{count} jobs are busy")
        first = asyncio.ensure_future(pool.run(blocking, 1))
        second = asyncio.ensure_future(pool.run(blocking, 2))   # waits for the one thread
        await asyncio.sleep(0)
        with pytest.raises(routes.RequestError) as refused:
            await pool.run(blocking, 3)
        release.set()
        done = await asyncio.gather(first, second)
        return refused.value, done, await pool.run(blocking, 4)

    refused, done, after = asyncio.run(scenario())
    assert (refused.status, str(refused)) == (429, "2 jobs are busy")
    assert done == [2, 4] and after == 8
