"""Claims: one trainer per run across processes, hosts and users sharing a results store.

A claim is the file `<store>/runs/<run_id>.lock` (JSON: host, pid, process start, user, owner, a
nonce), linked into place atomically by `ResultStore.claim`. Its modification time is a heartbeat,
renewed every `HEARTBEAT_S` by a thread of the claiming process. A claim is stale when its heartbeat
is older than `claim_timeout()`, whatever host wrote it, or at once when it names a process of this
host that is gone (or whose pid was reused), or when the asking `owner` wrote it (a retried task's
dead attempt). `take_over` replaces a stale claim so that of two processes that judged it stale
only one wins.
"""
from __future__ import annotations

import getpass
import json
import os
import socket
import threading
import time
from pathlib import Path


class ClaimBlocked(OSError):
    """A stale claim that this process may not remove; the message says what to do."""


HEARTBEAT_S = 15.0


def claim_timeout() -> float:
    """Seconds without a heartbeat after which a claim is stale ($LRBOOK_CLAIM_TIMEOUT, default 120)."""
    return float(os.environ.get("LRBOOK_CLAIM_TIMEOUT", 120))


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (Linux): state first, start time 20th."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def _process_start(pid: int) -> str | None:
    """The start time of process `pid` in clock ticks since boot (Linux), to tell a reused pid."""
    fields = _stat_fields(pid)
    return None if fields is None else fields[19]


def _exited(pid: int) -> bool:
    """Whether process `pid` has exited but is not yet reaped by its parent (a zombie): a killed Ray
    worker stays one until its raylet notices, and signal 0 still reaches it."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] in ("Z", "X")


def claim_info(owner: str | None) -> dict:
    try:
        user = getpass.getuser()
    except Exception:  # no user name (a container's uid without a passwd entry)
        user = str(os.getuid())
    return {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": _process_start(os.getpid()),
            "user": user, "owner": owner, "claimed": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "nonce": os.urandom(6).hex()}


def holds(lock: Path, token: str) -> bool:
    """Whether `lock` is still the claim this process wrote (`token`: its exact content)."""
    try:
        return lock.read_text() == token
    except OSError:
        return False


def read_claim(lock: Path) -> dict | None:
    """A claim's content: JSON, or "host pid" as written by lrbook before heartbeats."""
    try:
        text = lock.read_text().strip()
    except OSError:
        return None
    try:
        info = json.loads(text)
        return info if isinstance(info, dict) else None
    except json.JSONDecodeError:
        parts = text.split()
        if len(parts) == 2 and parts[1].isdigit():
            return {"host": parts[0], "pid": int(parts[1])}
        return None


def stat_or_none(path: Path):
    try:
        return path.stat()
    except FileNotFoundError:
        return None


def claim_is_stale(lock: Path, owner: str | None = None) -> bool:
    """Whether the claim in `lock` no longer stands for a live trainer (see `ResultStore.claim`)."""
    st = stat_or_none(lock)
    if st is None:
        return True
    if time.time() - st.st_mtime > claim_timeout():
        return True
    info = read_claim(lock)
    if info is None:  # unreadable (another user's 0600 claim) or half-written: the heartbeat decides
        return False
    if owner is not None and info.get("owner") == owner:
        return True
    if info.get("host") != socket.gethostname():
        return False
    pid = info.get("pid")
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, TypeError, ValueError):
        return False
    if _exited(int(pid)):
        return True
    started = info.get("pid_start")
    return started is not None and started != _process_start(int(pid))


def take_over(lock: Path, seen, new_claim: str | None) -> bool:
    """Replace the stale claim `lock` (as `seen` by stat) by `new_claim` (a file to link into
    place), or just remove it if None. Only one process at a time may take a claim over (it holds
    `<lock>.takeover`), and only the very claim judged stale is removed: two processes that both
    judged it stale never both win."""
    guard = lock.with_name(f".{lock.stem}.takeover")
    try:
        if new_claim:
            os.link(new_claim, guard)
        else:
            guard.touch(exist_ok=False)
    except FileExistsError:
        st = stat_or_none(guard)
        if st is not None and time.time() - st.st_mtime > 60:  # a takeover that died midway
            guard.unlink(missing_ok=True)
        return False
    try:
        now = stat_or_none(lock)
        if now is not None and (now.st_ino, now.st_mtime_ns) != (seen.st_ino, seen.st_mtime_ns):
            return False  # renewed or replaced since it was judged
        try:
            lock.unlink(missing_ok=True)
        except PermissionError:
            raise ClaimBlocked(f"stale claim {lock} belongs to another user and this folder does not let "
                               "others remove it (sticky bit): ask its owner to run `python -m lrbook "
                               "status --clean`, or remove it as root") from None
        if new_claim is None:
            return True
        try:
            os.link(new_claim, lock)
        except FileExistsError:  # claimed afresh between the unlink and the link
            return False
        return True
    finally:
        guard.unlink(missing_ok=True)


class Heartbeat:
    """Touches every claim this process holds every `HEARTBEAT_S` seconds, from a daemon thread."""

    def __init__(self):
        self._held: dict[Path, str] = {}  # claim file -> its content as written by this process
        self._lock = threading.Lock()
        self._thread = None
        self._pid = None

    def add(self, lock: Path, token: str) -> None:
        with self._lock:
            self._held[lock] = token
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._beat, name="lrbook-claim-heartbeat", daemon=True)
                self._thread.start()

    def discard(self, lock: Path) -> str | None:
        with self._lock:
            return self._held.pop(lock, None)

    def held(self) -> list[Path]:
        with self._lock:
            return list(self._held)

    def _beat(self) -> None:
        while True:
            time.sleep(HEARTBEAT_S)
            with self._lock:
                held = dict(self._held)
            for lock, token in held.items():
                if holds(lock, token):
                    try:
                        os.utime(lock)
                    except OSError:
                        pass


HEARTBEAT = Heartbeat()


def release_all(store_runs: Path | None = None) -> None:
    """Remove every claim this process holds (optionally only those in one runs/ folder): for a
    process about to exit without unwinding (a signal, an orphaned worker)."""
    for lock in HEARTBEAT.held():
        if store_runs is None or lock.parent == store_runs:
            token = HEARTBEAT.discard(lock)
            if token is not None and holds(lock, token):
                lock.unlink(missing_ok=True)
