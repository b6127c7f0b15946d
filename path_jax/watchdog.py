"""A stop request is honoured in bounded time, and the run says what it is waiting for.

Python runs a signal handler only when the main thread is back in the interpreter; a main thread
blocked in XLA (a long compile, a step that never finishes, a save waiting on the device) would
sit on SIGTERM indefinitely. :class:`StopWatchdog` watches from a thread that does not need the
main thread: the C-level handler writes every signal number to a wakeup socket
(``signal.set_wakeup_fd``) at once, whichever thread the kernel delivered it to. After the first
SIGTERM/SIGINT the watchdog prints, every ``report_every_s`` seconds, what the loop is doing
(:meth:`StopWatchdog.phase`, set by the training loop: "step 12: waiting for its metrics",
"saving the checkpoint of step 12", ...), and if the loop has not finished stopping after
``timeout_s`` it exits the process with ``128 + signum`` and says so. The loop's own handler
(path_jax.checkpoint.PreemptionHandler) still does the normal save-and-exit when it gets there.
"""
from __future__ import annotations

import os
import signal
import socket
import threading
import time


class StopWatchdog:
  """Context manager; enter it in the main thread *after* the signal handlers are installed.

  Args:
    timeout_s: seconds from the first signal to a forced exit (config.train.stop_timeout_s);
      <= 0 disables the forced exit (the reports stay).
    report_every_s: period of the "still waiting for ..." lines after a signal.
    signals: the signals that ask the run to stop.
  """

  def __init__(self, timeout_s: float, *, report_every_s: float = 10.0,
               signals=(signal.SIGTERM, signal.SIGINT)):
    self.timeout_s = float(timeout_s)
    self.report_every_s = max(0.05, float(report_every_s))
    self.signals = {int(s) for s in signals}
    self._phase = "starting"
    self._phase_since = time.monotonic()
    self._thread: threading.Thread | None = None
    self._sockets: tuple[socket.socket, socket.socket] | None = None
    self._previous_fd = -1
    self._done = threading.Event()

  def phase(self, text: str) -> None:
    """What the loop does now (shown in the reports after a signal); cheap, call freely."""
    self._phase, self._phase_since = text, time.monotonic()

  def __enter__(self) -> "StopWatchdog":
    if threading.current_thread() is not threading.main_thread():
      raise RuntimeError("StopWatchdog must be entered in the main thread")
    r, w = socket.socketpair()
    r.setblocking(True)
    w.setblocking(False)
    self._sockets = (r, w)
    try:
      self._previous_fd = signal.set_wakeup_fd(w.fileno(), warn_on_full_buffer=False)
    except ValueError:   # not the main thread of the main interpreter
      r.close()
      w.close()
      self._sockets = None
      return self
    self._thread = threading.Thread(target=self._watch, name="path_jax-stop-watchdog",
                                    daemon=True)
    self._thread.start()
    return self

  def __exit__(self, *exc) -> None:
    self._done.set()
    if self._sockets is None:
      return
    signal.set_wakeup_fd(self._previous_fd)
    r, w = self._sockets
    try:
      w.send(b"\0")   # wakes the thread so it sees _done
    except OSError:
      pass
    if self._thread is not None:
      self._thread.join(timeout=5)
    r.close()
    w.close()
    self._sockets = None

  def _say(self, text: str) -> None:
    os.write(2, (text + "\n").encode())

  def _watch(self) -> None:
    r, _ = self._sockets
    first: tuple[int, float] | None = None
    while not self._done.is_set():
      timeout = None
      if first is not None:
        timeout = self.report_every_s
        if self.timeout_s > 0:
          timeout = max(0.0, min(timeout, first[1] + self.timeout_s - time.monotonic()))
      r.settimeout(timeout)
      try:
        data = r.recv(64)
      except socket.timeout:
        data = b""
      except OSError:
        return
      if self._done.is_set():
        return
      now = time.monotonic()
      if first is None:
        signums = [b for b in data if b in self.signals]
        if not signums:
          continue
        first = (signums[0], now)
      name = signal.Signals(first[0]).name
      waited = now - first[1]
      doing = f"{self._phase} (for {now - self._phase_since:.0f} s)"
      if self.timeout_s > 0 and waited >= self.timeout_s:
        self._say(f"{name} received {waited:.0f} s ago and the run has not stopped: still "
                  f"{doing}. Exiting without a new checkpoint (exit code {128 + first[0]}); the "
                  f"newest complete checkpoint is kept (config.train.stop_timeout_s="
                  f"{self.timeout_s:g}).")
        os._exit(128 + first[0])
      if not data:
        self._say(f"{name} received {waited:.0f} s ago; waiting for: {doing}")
