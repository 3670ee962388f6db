"""Events between a training process and the UI: a local, authenticated, JSON-only channel.

The UI side owns an :class:`EventServer` (a ``multiprocessing.connection.Listener`` on a
Unix socket or named pipe). The training side sends through an :class:`EventSender`. Both
ends authenticate with a random per-run key (handed to the child in the environment), and
every payload is a JSON object sent with ``send_bytes`` — nothing is ever unpickled, so a
peer can at worst send a frame that is dropped and counted.

The sender never blocks or fails the training: events go into a bounded queue that a
background thread drains in batches; when the queue is full or the UI is gone, events are
dropped and counted.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from collections import deque
from multiprocessing import AuthenticationError, connection
from typing import Any, Callable

ENV_ADDRESS = "TENSORSCOPE_ADDRESS"
"""Environment variable naming the UI's listening address (set by ``tensorscope run``)."""
ENV_AUTHKEY = "TENSORSCOPE_AUTHKEY"
"""Environment variable holding the run's key, hex encoded."""

BATCH_S = 0.05
"""How long a step record may wait on the training side before it is sent (see EventSender)."""

MAX_FRAME = 16 * 1024 * 1024
"""Frames larger than this are refused (a record with a huge per-module table, or garbage)."""


def new_authkey() -> bytes:
    return secrets.token_bytes(32)


class EventServer:
    """Accepts authenticated clients and hands each decoded JSON event to ``on_event``.

    Counters (read from any thread): ``received``, ``malformed`` (frames that were not a
    JSON object), ``refused`` (clients that failed the key check).
    """

    def __init__(self, on_event: Callable[[dict[str, Any]], None],
                 authkey: bytes | None = None) -> None:
        self.authkey = authkey or new_authkey()
        self.on_event = on_event
        # No authkey here: the handshake is done per connection in its own thread, so one
        # silent client cannot hold up the accept loop.
        self._listener = connection.Listener(family=connection.default_family)
        self.address = self._listener.address
        self.received = 0
        self.malformed = 0
        self.refused = 0
        self.callback_errors = 0
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name="tensorscope-accept",
                                        daemon=True)
        self._thread.start()

    def env(self) -> dict[str, str]:
        """Environment variables that let a child process connect."""
        address = self.address if isinstance(self.address, str) else str(self.address)
        return {ENV_ADDRESS: address, ENV_AUTHKEY: self.authkey.hex()}

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                conn = self._listener.accept()
            except OSError:
                return  # listener closed
            threading.Thread(target=self._serve, args=(conn,), name="tensorscope-conn",
                             daemon=True).start()

    def _serve(self, conn: connection.Connection) -> None:
        try:
            try:
                # The same mutual challenge Listener(authkey=...) performs.
                connection.deliver_challenge(conn, self.authkey)
                connection.answer_challenge(conn, self.authkey)
            except (AuthenticationError, OSError, EOFError, ValueError):
                self.refused += 1
                return
            while not self._closed.is_set():
                try:
                    frame = conn.recv_bytes(MAX_FRAME)
                except (EOFError, OSError):
                    return
                self._handle(frame)
        finally:
            conn.close()

    def _handle(self, frame: bytes) -> None:
        try:
            event = json.loads(frame.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            self.malformed += 1
            return
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            self.malformed += 1
            return
        self.received += 1
        try:
            self.on_event(event)
        except Exception:  # the consumer's bug must not kill the channel
            self.callback_errors += 1

    def close(self) -> None:
        self._closed.set()
        try:
            self._listener.close()
        except OSError:
            pass


class EventSender:
    """The training side: ``send(event)`` queues a JSON-able dict and returns at once.

    A background thread connects lazily and sends; ``dropped`` counts events lost to a full
    queue, a missing UI, or a value that would not serialise. ``close(timeout)`` flushes what
    it can in that time.

    Step records are sent in batches: the thread wakes every :data:`BATCH_S` and sends what
    has queued up. Waking it for each record (a lock, a futex, and the thread then taking the
    GIL from the training loop to encode) measured 2.5 % of an 7 ms CPU step; the UI redraws
    at most 20 times a second, so it loses nothing. Other events (run, model, error, end)
    wake it at once. A process killed outright (SIGKILL, a segfault) loses at most the
    records of the last BATCH_S; an exception in the script is reported and flushed.
    """

    def __init__(self, address: str, authkey: bytes, capacity: int = 4096) -> None:
        self.address = address
        self.authkey = authkey
        self.capacity = capacity
        self.dropped = 0
        self.sent = 0
        self._pending: deque[dict[str, Any] | Callable[[], dict[str, Any]]] = deque()
        self._wake = threading.Event()
        self._closing = False
        self._dead = False
        self._thread = threading.Thread(target=self._run, name="tensorscope-sender", daemon=True)
        self._thread.start()

    def send(self, event: dict[str, Any]) -> None:
        # The event is queued as it is and encoded on the sender thread: JSON encoding of a
        # step with module detail is a visible share of a short training step. Callers hand
        # over fresh dicts and do not change them afterwards.
        if self._queue(event) and event.get("type") != "step":
            self._wake.set()

    __call__ = send

    def send_later(self, build: Callable[[], dict[str, Any]]) -> None:
        """Queue a step event as a function that returns it, called on the sender thread
        in its turn: a record built there costs the training thread nothing. ``build``
        must read only values nobody changes after the call; if it raises, the event is
        dropped and counted."""
        self._queue(build)  # step events: no wake-up (see the class docstring)

    def _queue(self, item: dict[str, Any] | Callable[[], dict[str, Any]]) -> bool:
        """Append ``item`` for the thread; False (and counted) when it cannot go."""
        if self._dead or self._closing or len(self._pending) >= self.capacity:
            self.dropped += 1
            return False
        self._pending.append(item)  # deque.append is atomic: no lock on the training thread
        return True

    def _run(self) -> None:
        try:
            conn = connection.Client(self.address, authkey=self.authkey)
        except Exception:  # UI gone or refused us: every event from now on is dropped
            self._fail()
            return
        try:
            while True:
                self._wake.wait(BATCH_S)
                self._wake.clear()
                closing = self._closing  # send() queues nothing once it is set
                while self._pending:
                    event = self._pending.popleft()
                    try:
                        if type(event) is not dict:
                            event = event()  # send_later's builder
                        frame = json.dumps(event, default=_json_default).encode("utf-8")
                    except Exception:
                        # A value that would not serialise, a builder that failed: this
                        # event only.
                        self.dropped += 1
                        continue
                    try:
                        conn.send_bytes(frame)
                        self.sent += 1
                    except Exception:
                        self.dropped += 1
                        self._fail()
                        return
                if closing:
                    return
        finally:
            conn.close()

    def _fail(self) -> None:
        self._dead = True
        while self._pending:  # what was queued will never go anywhere
            try:
                self._pending.popleft()
            except IndexError:
                return
            self.dropped += 1

    def close(self, timeout: float = 2.0) -> None:
        """Flush for up to ``timeout`` seconds, then stop the thread."""
        if self._dead:
            return
        self._closing = True
        self._wake.set()
        self._thread.join(timeout)


def _json_default(value: Any) -> Any:
    try:
        return float(value)
    except Exception:
        return repr(value)


_ENV_SENDER: EventSender | None = None
_ENV_LOCK = threading.Lock()


def sender_from_env() -> EventSender | None:
    """The process's sender to the UI when started by ``tensorscope run``, else None.

    One per process, shared by the runner's instrumentation and any ``tensorscope.watch``
    the script opens itself.
    """
    global _ENV_SENDER
    address = os.environ.get(ENV_ADDRESS)
    key = os.environ.get(ENV_AUTHKEY)
    if not address or not key:
        return None
    with _ENV_LOCK:
        if _ENV_SENDER is None:
            try:
                _ENV_SENDER = EventSender(address, bytes.fromhex(key))
            except ValueError:
                return None
        return _ENV_SENDER


def sink_from_env() -> Callable[[Any], None] | None:
    """A step-record sink that streams to the UI under ``tensorscope run``, else None."""
    sender = sender_from_env()
    if sender is None:
        return None

    def sink(record: Any) -> None:
        sender.send(record.to_json())

    return sink
