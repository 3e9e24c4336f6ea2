"""The gateway pool: at most ``limit`` gateways kept, the least recently used idle one
closed first, one in use never."""

from __future__ import annotations

import asyncio

from meterhub.collector.drivers.gateway_pool import GatewayPool


def kept(pool: GatewayPool) -> list[int]:
    return [port for _host, port in pool.addresses()]


def test_the_least_recently_used_idle_gateway_makes_room() -> None:
    async def run() -> None:
        pool = GatewayPool(2, 1.0, None)
        for port in (1, 2, 1, 3):
            async with pool.using("127.0.0.1", port):
                pass
        assert kept(pool) == [1, 3]  # 2 was used least recently
        async with pool.using("127.0.0.1", 1) as first, pool.using("127.0.0.1", 1) as again:
            assert again is first  # one gateway per address
        assert kept(pool) == [3, 1]

    asyncio.run(run())


def test_a_gateway_in_use_is_never_closed() -> None:
    async def run() -> None:
        pool = GatewayPool(1, 1.0, None)
        async with pool.using("127.0.0.1", 1), pool.using("127.0.0.1", 2):
            assert kept(pool) == [1, 2]  # both in use: the cap waits for an idle one
            async with pool.using("127.0.0.1", 3):
                assert kept(pool) == [1, 2, 3]
        async with pool.using("127.0.0.1", 4):
            assert kept(pool) == [4]  # every idle one closed to get back under the cap
        pool.close()
        assert len(pool) == 0

    asyncio.run(run())


def test_a_take_looks_again_after_letting_closed_sockets_go() -> None:
    async def run() -> None:
        pool = GatewayPool(1, 1.0, None)
        async with pool.using("127.0.0.1", 1):
            pass

        async def meanwhile() -> None:  # runs while the take of 2 lets the loop turn
            async with pool.using("127.0.0.1", 3):
                pass

        async def take() -> None:
            async with pool.using("127.0.0.1", 2):
                assert kept(pool) == [2]  # 3, kept meanwhile and idle, was closed too

        await asyncio.gather(take(), meanwhile())

    asyncio.run(run())
