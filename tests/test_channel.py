"""The channel shell (actors/channel.py) on real sockets in this process: Unix-domain and TCP, acks,
a receiver that goes away and comes back, and the counts of what a break cost. No Ray.
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from actors import channel
from actors.channel import Address, Peer, Receiver, Sender
from actors.core.routing import Outbox

NODE = "node-a"


class Sink:
    """A receiver that keeps every body and acknowledges it at once (or holds its acks)."""

    def __init__(self, name: str = "sink", *, ack: bool = True) -> None:
        self.got: list[tuple[int, int, Any]] = []
        self.ack = ack
        self.reads: list[int] = []  # batches handed over per read
        self.receiver = Receiver(
            name, self.on_message, node=NODE, host="127.0.0.1", on_read_end=self.on_read_end
        )

    def on_message(self, peer: Peer, number: int, missed: int, body: Any) -> None:
        self.got.append((number, missed, body))
        if self.ack:
            peer.ack(number)

    def on_read_end(self) -> None:
        self.reads.append(len(self.got) - sum(self.reads))


async def until(cond: Any, what: str, timeout: float = 20.0) -> None:
    async def poll() -> None:
        while not cond():  # noqa: ASYNC110 - polls a plain predicate: there is no event to wait on
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(poll(), timeout)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


class PathlessUnixLoop(asyncio.SelectorEventLoop):
    """asyncio's loop, refusing a Unix socket *path* as uvloop does for a Linux abstract-namespace one
    (EINVAL). Ray runs async actors on uvloop whenever it is installed on the cluster; the channel
    must then hand the loop sockets it made itself (``sock=``).
    """

    refused = 0

    async def create_unix_server(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        self._refuse(args[1] if len(args) > 1 else kwargs.get("path"))
        return await super().create_unix_server(*args, **kwargs)

    async def create_unix_connection(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        self._refuse(args[1] if len(args) > 1 else kwargs.get("path"))
        return await super().create_unix_connection(*args, **kwargs)

    def _refuse(self, path: Any) -> None:
        if isinstance(path, str) and path.startswith("\0"):
            PathlessUnixLoop.refused += 1
            raise OSError(errno.EINVAL, "Invalid argument")


def test_the_unix_socket_works_on_a_loop_that_takes_no_abstract_path() -> None:
    async def round_trip() -> None:
        sink = Sink()
        address = await sink.receiver.address()  # listening: its socket was accepted
        assert address.uds.startswith("\0")

        async def resolve() -> Address:
            return address

        sender = Sender("to-sink", resolve, Outbox(max_batches=8, replay=False), node=NODE)
        assert sender.send(["over the Unix socket"], 1)
        await until(lambda: sink.got == [(1, 0, ["over the Unix socket"])], "the batch")
        await until(lambda: sender.outbox.pending == 0, "its acknowledgement")
        assert sender.breaks == 0
        assert sender.last_error == ""
        sender.close()
        sink.receiver.close()

    with asyncio.Runner(loop_factory=PathlessUnixLoop) as runner:
        runner.run(round_trip())
    assert PathlessUnixLoop.refused == 0  # the channel never gave it a path to refuse


async def test_batches_arrive_in_order_and_are_acknowledged_over_uds_and_tcp() -> None:
    for node in (NODE, "node-b"):  # the same node: Unix socket; another: TCP
        sink = Sink()
        address = await sink.receiver.address()
        assert address.uds.startswith("\0")
        assert address.port > 0

        async def resolve(address: Address = address) -> Address:
            return address

        sender = Sender("to-sink", resolve, Outbox(max_batches=64, replay=False), node=node)
        for k in range(50):
            assert sender.send([k, b"x" * k], 1)
        await until(lambda sink=sink: len(sink.got) == 50, "50 batches")
        await until(lambda sender=sender: sender.outbox.pending == 0, "every batch acknowledged")
        assert [body[0] for _, _, body in sink.got] == list(range(50))
        assert [n for n, _, _ in sink.got] == list(range(1, 51))
        sender.close()
        sink.receiver.close()


async def test_a_receiver_that_restarts_is_found_again_and_the_lost_batches_are_counted() -> None:
    sinks = [Sink(ack=False)]

    async def resolve() -> Address:
        return await sinks[-1].receiver.address()

    sender = Sender("to-sink", resolve, Outbox(max_batches=8, replay=False), node=NODE)
    for k in range(3):
        sender.send(k, 10)
    await until(lambda: len(sinks[0].got) == 3, "3 batches at the first receiver")
    sinks[0].receiver.close()  # gone without acknowledging: 30 records lost
    sinks.append(Sink())
    await until(lambda: sender.breaks == 1, "the break seen")
    sender.send("after", 5)
    await until(lambda: len(sinks[1].got) == 1, "the batch after the break")
    assert sinks[1].got == [(1, 30, "after")]  # numbered afresh, carrying the lost count
    assert (sender.outbox.lost, sender.outbox.missed) == (30, 0)
    sender.close()
    sinks[1].receiver.close()


async def test_replay_writes_unacknowledged_batches_again_after_a_break() -> None:
    sinks = [Sink(ack=False)]

    async def resolve() -> Address:
        return await sinks[-1].receiver.address()

    sender = Sender("to-sink", resolve, Outbox(max_batches=8, replay=True), node=NODE)
    sender.send("a", 1)
    sender.send("b", 1)
    await until(lambda: len(sinks[0].got) == 2, "2 batches")
    sinks[0].receiver.close()
    sinks.append(Sink())
    await until(lambda: [b for _, _, b in sinks[1].got] == ["a", "b"], "a and b again")
    assert sender.outbox.lost == 0
    sender.close()
    sinks[1].receiver.close()


async def test_a_full_outbox_while_no_receiver_exists_counts_its_drops() -> None:
    async def resolve() -> None:
        return None

    sender = Sender("nowhere", resolve, Outbox(max_batches=2, replay=False), node=NODE)
    assert [sender.send(k, 4) for k in range(4)] == [True, True, False, False]
    assert (sender.outbox.dropped, sender.outbox.missed, sender.connected) == (8, 8, False)
    sender.close()


async def test_the_acknowledgements_of_one_read_are_written_once() -> None:
    sink = Sink()
    address = await sink.receiver.address()

    async def resolve() -> Address:
        return address

    sender = Sender("to-sink", resolve, Outbox(max_batches=256, replay=False), node=NODE)
    await sender.wait_connected()
    for k in range(200):  # written back to back: the receiver reads many of them at a time
        assert sender.send([k], 1)
    await until(lambda: len(sink.got) == 200, "200 batches")
    await until(lambda: sender.outbox.pending == 0, "every batch acknowledged, the last one included")
    (peer,) = sink.receiver.peers
    assert 1 <= peer.ack_writes < 200
    assert sum(sink.reads) == 200
    assert len([n for n in sink.reads if n]) == peer.ack_writes  # one write per read that brought batches
    sender.close()
    sink.receiver.close()


async def test_a_stream_without_the_receivers_key_is_dropped_unread() -> None:
    # Anyone who can reach the TCP port (or the node's abstract socket) could write tick batches:
    # a stream must begin with the key that only the job's actors get (through Ray, in the address).
    import msgspec

    from actors.channel import HEADER

    sink = Sink()
    address = await sink.receiver.address()
    assert address.key
    assert address.key not in repr(address)
    batch = msgspec.msgpack.encode([1, 0, ["forged"]])
    for first in (b"", b"not the key", batch):
        reader, writer = await asyncio.open_connection(address.host, address.port)
        frames = ([first] if first != batch else []) + [batch, batch]
        writer.write(b"".join(HEADER.pack(len(f)) + f for f in frames))
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 20.0) == b""  # dropped, no acknowledgement
        writer.close()
    assert sink.got == []
    assert sink.receiver.strangers == 3

    async def resolve() -> Address:
        return address

    sender = Sender("to-sink", resolve, Outbox(max_batches=8, replay=False), node="node-b")  # TCP, keyed
    assert sender.send(["real"], 1)
    await until(lambda: [body for _, _, body in sink.got] == [["real"]], "the keyed sender's batch")
    sender.close()
    sink.receiver.close()


async def test_without_the_abstract_namespace_the_unix_socket_is_a_file_in_a_private_directory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where Linux's abstract namespace is missing (macOS), the receiver listens on a socket file in a
    0700 directory of its own process; forced here on Linux. The file goes when the receiver closes.
    """
    assert channel.abstract_namespace() == sys.platform.startswith("linux")  # the probe, as found here
    monkeypatch.setattr(channel, "abstract_namespace", lambda: False)
    sink = Sink()
    address = await sink.receiver.address()
    socket_file = Path(address.uds)
    assert socket_file.is_absolute(), address.uds
    assert socket_file.is_socket(), address.uds  # noqa: ASYNC240 - a stat of the socket file under test
    directory = socket_file.parent
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert directory.stat().st_uid == os.getuid()

    async def resolve() -> Address:
        return address

    sender = Sender("to-sink", resolve, Outbox(max_batches=8, replay=False), node=NODE)
    for k in range(5):
        assert sender.send([k], 1)
    await until(lambda: [body for _, _, body in sink.got] == [[k] for k in range(5)], "5 batches")
    await until(lambda: sender.outbox.pending == 0, "their acknowledgements")
    assert sender.breaks == 0
    assert sender.last_error == ""
    sender.close()
    sink.receiver.close()
    assert not socket_file.exists()  # noqa: ASYNC240 - a stat of the socket file under test
    again = Sink()
    assert Path((await again.receiver.address()).uds).parent == directory  # one directory per process
    again.receiver.close()


async def test_a_receiver_that_closes_on_purpose_is_a_quiet_break_and_one_that_dies_warns() -> None:
    from loguru import logger

    logged: list[tuple[str, str]] = []
    sink_id = logger.add(
        lambda m: logged.append((m.record["level"].name, m.record["message"])), level="DEBUG"
    )
    sinks = [Sink()]

    async def resolve() -> Address:
        return await sinks[-1].receiver.address()

    sender = Sender("to-sink", resolve, Outbox(max_batches=8, replay=False), node=NODE)
    try:
        sender.send("a", 1)
        await until(lambda: len(sinks[0].got) == 1, "a at the first receiver")
        sinks[0].receiver.close()  # a stop: the goodbye goes first
        sinks.append(Sink())
        await until(lambda: sender.breaks == 1, "the first break seen")
        sender.send("b", 1)
        await until(lambda: len(sinks[1].got) == 1, "b at the second receiver")
        for peer in list(sinks[1].receiver.peers):  # a death: the streams end with no goodbye
            assert peer.transport is not None
            peer.transport.abort()
        await until(lambda: sender.breaks == 2, "the second break seen")
    finally:
        logger.remove(sink_id)
        sender.close()
        for sink in sinks:
            sink.receiver.close()
    breaks = [(level, text) for level, text in logged if text.startswith("channel to-sink:")]
    assert breaks == [
        ("DEBUG", "channel to-sink: the receiver closed; 0 records lost, re-wiring"),
        ("WARNING", "channel to-sink: the receiver went away; 0 records lost, re-wiring"),
    ]
