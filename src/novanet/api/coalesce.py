"""Group commit inside one API process: concurrent requests share one transaction.

Each request puts its item on a queue and waits for its own answer. One committing thread
takes whatever is queued (the requests that arrived while the previous transaction was in
flight) and runs them as one batch: one transaction, one commit, one wake-up of the
agents. No request waits for a batch to fill: an idle process runs a lone request at once.

A batch is all or nothing. When it is refused because of a member (a quota, a taken
address, an unknown instance ...), every member is run again on its own, so one bad
request gets its own error and never fails the others.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

from novanet.domain.errors import NovanetError

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger("novanet.api.coalesce")


class Coalescer(Generic[T, R]):
    """Runs ``run_batch`` (items -> one result per item, all or nothing) on batches of
    concurrently submitted items, from one thread started on first use."""

    def __init__(self, name: str, run_batch: Callable[[Sequence[T]], list[R]], max_batch: int = 64) -> None:
        self.name = name
        self.run_batch = run_batch
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[tuple[T, Future[R]] | None] = queue.SimpleQueue()  # None: stop
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.batches = 0  # committed batches and items: for tests and metrics
        self.items = 0

    def submit(self, item: T) -> Future[R]:
        """Queue ``item``; the future holds its result or its own error."""
        fut: Future[R] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self.name}: the coalescer is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=f"novanet-{self.name}", daemon=True)
                self._thread.start()
            self._queue.put((item, fut))
        return fut

    def close(self) -> None:
        """Finish what is queued, then stop the thread."""
        with self._lock:
            self._closed = True
            thread = self._thread
            if thread is not None:
                self._queue.put(None)
        if thread is not None:
            thread.join()

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            self._run(batch)
            if stop:
                return

    def _run(self, batch: list[tuple[T, Future[R]]]) -> None:
        items = [item for item, _ in batch]
        try:
            results = self.run_batch(items)
        except NovanetError as exc:
            if len(batch) == 1:
                batch[0][1].set_exception(exc)
                return
            log.info(
                "%s: a batch of %d was refused (%s); running each on its own", self.name, len(batch), exc
            )
            for item, fut in batch:
                self._run_one(item, fut)
            return
        except BaseException as exc:  # a bug or an outage: every member hears of it
            for _, fut in batch:
                fut.set_exception(exc)
            return
        self.batches += 1
        self.items += len(batch)
        for (_, fut), res in zip(batch, results, strict=True):
            fut.set_result(res)

    def _run_one(self, item: T, fut: Future[R]) -> None:
        try:
            [res] = self.run_batch([item])
        except BaseException as exc:
            fut.set_exception(exc)
            return
        self.batches += 1
        self.items += 1
        fut.set_result(res)
