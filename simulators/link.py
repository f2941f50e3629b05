"""A flaky network link: a TCP proxy between one simulated device and the broker.

The agent is not told it is simulated: it connects to a local port, and the
proxy forwards bytes to the broker while the device's link is up. When the
link goes down the proxy cuts the connection without an MQTT DISCONNECT (so
the broker fires the device's Will, as for a real outage) and refuses new
connections until it is back. One asyncio loop in one thread serves every
device, so a flaky fleet costs two sockets per device, not threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable

CHECK_INTERVAL_S = 0.2


class LinkProxy:
    """Per-device proxy ports in front of one broker; ``add`` returns the port a device should use."""

    def __init__(self, target_host: str, target_port: int, *, listen_host: str = "127.0.0.1") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.listen_host = listen_host
        self.cuts = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="edgefleet-link-proxy", daemon=True)
        self._servers: list[asyncio.base_events.Server] = []
        self._thread.start()

    def add(self, link_up: Callable[[], bool]) -> int:
        """Open a listening port whose connections live only while ``link_up()`` is true."""
        fut = asyncio.run_coroutine_threadsafe(self._serve(link_up), self._loop)
        return fut.result(timeout=10)

    def close(self) -> None:
        async def _close() -> None:
            for server in self._servers:
                server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self._loop.is_running():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(_close(), self._loop).result(timeout=5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        self._loop.close()

    async def _serve(self, link_up: Callable[[], bool]) -> int:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._session(reader, writer, link_up)

        server = await asyncio.start_server(handle, self.listen_host, 0)
        self._servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    async def _session(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link_up: Callable[[], bool]
    ) -> None:
        if not link_up():
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        pumps = [
            asyncio.ensure_future(_pump(reader, up_writer)),
            asyncio.ensure_future(_pump(up_reader, writer)),
            asyncio.ensure_future(self._watch(link_up)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            writer.transport.abort()
            up_writer.transport.abort()

    async def _watch(self, link_up: Callable[[], bool]) -> None:
        while link_up():
            await asyncio.sleep(CHECK_INTERVAL_S)
        self.cuts += 1


async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()


__all__ = ["LinkProxy"]
