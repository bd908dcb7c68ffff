"""A Unix socket that forwards to a PostgreSQL server's TCP address.

The sandbox's agents run in network namespaces that cannot reach the root namespace's
127.0.0.1, but a Unix socket is a file, seen from every namespace. The server still sees
a TCP client from its own address and authenticates it by password as usual.

Run as ``python -m novanet.sandbox.pgrelay SOCKET HOST PORT``; ended by SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _serve(path: str, host: str, port: int) -> None:
    async def handle(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        try:
            sr, sw = await asyncio.open_connection(host, port)
        except OSError:
            cw.close()
            return
        await asyncio.gather(_pipe(cr, sw), _pipe(sr, cw))

    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    server = await asyncio.start_unix_server(handle, path=path)
    os.chmod(path, 0o600)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        sys.stderr.write("usage: python -m novanet.sandbox.pgrelay SOCKET HOST PORT\n")
        return 2
    asyncio.run(_serve(argv[0], argv[1], int(argv[2])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
