"""The job channel between the host and a warm worker: one JSON document per message, over
a transport every platform has.

- ``stdio`` (BM, CN): a JSON line per message on the worker's stdin (host -> worker) and on a
  private duplicate of its stdout (worker -> host). The worker points its fd 1 at stderr, so
  whatever an app or a library prints can never corrupt the channel. When the host side dies,
  the worker reads end-of-file and exits at once, in the middle of a round too: a dead owner
  leaves no worker burning a core.
- ``files`` (VM, MVM, VMCN: the guest shares only the 9p job folder with the host): numbered
  files, written atomically (``tmp`` then rename), in ``<dir>/to-worker`` and
  ``<dir>/from-worker``; each side reads the other's folder in sequence order. A guest cannot
  see its owner die; its QEMU dies with the owner instead (see ``platforms/vm.py``).

Messages (all carry ``"schema": 1`` and a ``type``):
  host -> worker  ``job`` {seq, job: WorkerJob.to_json()} | ``stop``
  worker -> host  ``ready`` {load and environment facts} | ``result`` {seq, status, path, error}
                  | ``error`` {error} (the worker could not load; it exits after sending it)

This module is used on both sides; it imports nothing but the standard library.
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Protocol

CHANNEL_SCHEMA = 1
TO_WORKER = "to-worker"
FROM_WORKER = "from-worker"
POLL_S = 0.02  # how often an idle side looks for the other's next file


class ChannelError(RuntimeError):
    pass


def message(kind: str, **fields: Any) -> dict[str, Any]:
    return {"schema": CHANNEL_SCHEMA, "type": kind, **fields}


def decode(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ChannelError(f"not a channel message: {text[:120]!r} ({exc})") from None
    if not isinstance(data, dict) or data.get("schema") != CHANNEL_SCHEMA or "type" not in data:
        raise ChannelError(f"not a channel message of schema {CHANNEL_SCHEMA}: {text[:120]!r}")
    return data


class Channel(Protocol):
    name: str

    def send(self, msg: dict[str, Any]) -> None: ...

    def receive(self, timeout_s: float | None = None) -> dict[str, Any] | None:
        """The next message; None at end-of-file (the other side is gone). Raises
        TimeoutError when ``timeout_s`` passes first."""

    def close(self) -> None: ...


# -- stdio ----------------------------------------------------------------------------------
#: The longest a receive waits without returning to Python code (see StreamChannel.receive).
WAIT_SLICE_S = 0.25


class StreamChannel:
    """JSON lines over two file descriptors. A reader thread turns lines into messages, so
    ``receive`` can wait with a timeout, and ``on_eof`` runs the moment the other side goes."""

    name = "stdio"

    def __init__(self, read_fd: int, write_fd: int,
                 on_eof: Callable[[], None] | None = None) -> None:
        self._in = os.fdopen(read_fd, "rb", buffering=0)
        self._out = os.fdopen(write_fd, "wb", buffering=0)
        self._messages: list[dict[str, Any] | None | ChannelError] = []
        self._cond = threading.Condition()
        self._on_eof = on_eof
        self._send_lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, name="deploybench-channel", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        buffer = b""
        try:
            while True:
                chunk = self._in.read(65536)
                if not chunk:
                    break
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if not line.strip():
                        continue
                    try:
                        item: Any = decode(line.decode(errors="replace"))
                    except ChannelError as exc:
                        item = exc
                    with self._cond:
                        self._messages.append(item)
                        self._cond.notify_all()
        except (OSError, ValueError):
            pass
        with self._cond:
            self._messages.append(None)
            self._cond.notify_all()
        if self._on_eof is not None:
            self._on_eof()

    def send(self, msg: dict[str, Any]) -> None:
        data = (json.dumps(msg, separators=(",", ":")) + "\n").encode()
        with self._send_lock:
            try:
                self._out.write(data)
            except (BrokenPipeError, ValueError, OSError) as exc:
                raise ChannelError(f"the other side of the channel is gone ({exc})") from None

    def receive(self, timeout_s: float | None = None) -> dict[str, Any] | None:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            while not self._messages:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError("no message in time")
                # In slices: a Ctrl-C the kernel hands to another of our threads (the reader's
                # read, a timer) only flags the main thread, which acts on it when its wait
                # returns; a whole round's wait would hold it back until the round ended.
                self._cond.wait(WAIT_SLICE_S if left is None else min(left, WAIT_SLICE_S))
            item = self._messages[0]
            if item is not None:  # end-of-file stays for every later call
                self._messages.pop(0)
        if isinstance(item, ChannelError):
            raise item
        return item

    def close(self) -> None:
        for f in (self._out, self._in):
            try:
                f.close()
            except OSError:
                pass


# -- files ----------------------------------------------------------------------------------
class FileChannel:
    """Numbered JSON files in a shared folder. ``inbox`` is read, ``outbox`` written."""

    name = "files"

    def __init__(self, folder: Path, *, side: str, alive: Callable[[], bool] | None = None) -> None:
        if side not in ("host", "worker"):
            raise ValueError(side)
        self.folder = Path(folder)
        self.inbox = self.folder / (FROM_WORKER if side == "host" else TO_WORKER)
        self.outbox = self.folder / (TO_WORKER if side == "host" else FROM_WORKER)
        for d in (self.inbox, self.outbox):
            d.mkdir(parents=True, exist_ok=True)
        self._next_in = 0
        self._next_out = 0
        self._alive = alive  # host side: is the guest still there? (False = end-of-file)

    def send(self, msg: dict[str, Any]) -> None:
        name = f"{self._next_out:06d}.json"
        tmp = self.outbox / f".{name}.tmp"
        try:
            tmp.write_text(json.dumps(msg, separators=(",", ":")))
            tmp.replace(self.outbox / name)
        except OSError as exc:
            raise ChannelError(f"cannot write {self.outbox / name}: {exc.strerror or exc}") from None
        self._next_out += 1

    def receive(self, timeout_s: float | None = None) -> dict[str, Any] | None:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        path = self.inbox / f"{self._next_in:06d}.json"
        while True:
            alive = self._alive is None or self._alive()
            found = self._take(path)  # after asking: a last message written before the end counts
            if found is not None:
                return found
            if not alive:
                return None
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError("no message in time")
            time.sleep(POLL_S)

    def _take(self, path: Path) -> dict[str, Any] | None:
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ChannelError(f"cannot read {path}: {exc.strerror or exc}") from None
        self._next_in += 1
        return decode(text)

    def close(self) -> None:
        pass
