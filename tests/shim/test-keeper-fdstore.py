#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The keeper's fd store protocol against a NOTIFY_SOCKET receiver (suite 'unit').

Plays systemd for `cpr-exec run --fd-store`: a datagram socket as
$NOTIFY_SOCKET that keeps what FDSTORE=1 sends (by FDNAME) and drops what
FDSTOREREMOVE=1 names, as systemd's fd store does. Then kills the keeper
and its program with SIGKILL (systemd kills a unit's processes when its
main process dies), starts a new keeper with the stored fds passed the way
systemd passes them (fds from 3, LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID),
and checks that the program came back from them: restarted (not started
afresh), its memfd counter kept counting (the very memfd, which this test
holds a dup of), the keeper reporting the cause. A clean stop empties the
store. TAP output.

Environment: CPR_EXEC, CPRTEST_APP (set by meson).
"""
import array
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

CPR_EXEC = os.environ["CPR_EXEC"]
APP = os.environ["CPRTEST_APP"]
n_test = 0
failed = 0


def ok(cond, what):
    global n_test, failed
    n_test += 1
    print(("ok" if cond else "not ok") + f" {n_test} - {what}", flush=True)
    if not cond:
        failed += 1
    return cond


class FdStore:
    """What systemd's fd store would hold, fed by the notify socket."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setblocking(False)
        self.fds = {}  # name -> [fd, ...]
        self.messages = []

    def pump(self):
        while True:
            fds = array.array("i")
            try:
                msg, anc, _, _ = self.sock.recvmsg(
                    4096, socket.CMSG_SPACE(253 * fds.itemsize))
            except BlockingIOError:
                return
            for level, typ, data in anc:
                if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                    fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
            fields = dict(line.split("=", 1)
                          for line in msg.decode().split("\n") if "=" in line)
            self.messages.append(fields)
            name = fields.get("FDNAME", "stored")
            if fields.get("FDSTORE") == "1":
                self.fds.setdefault(name, []).extend(fds)
            else:
                for fd in fds:
                    os.close(fd)
            if fields.get("FDSTOREREMOVE") == "1":
                for fd in self.fds.pop(name, []):
                    os.close(fd)

    def names(self):
        return sorted(n for n in self.fds if n.startswith("cprkit-"))


def status(sock_path):
    r = subprocess.run([CPR_EXEC, "status", "--json", "--socket", sock_path],
                       capture_output=True, text=True, timeout=20)
    return json.loads(r.stdout) if r.returncode == 0 else None


def wait_for(pred, store, what, timeout=15.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        store.pump()
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    store.pump()
    print(f"# timed out waiting for {what}", flush=True)
    return None


def counter_of(fd):
    # cprtest-app keeps a 64-bit start counter at the memfd's offset 0.
    return int.from_bytes(os.pread(fd, 8, 0), "little")


def main():
    tmp = tempfile.mkdtemp(prefix="cprkit-fdstore-")
    notify = os.path.join(tmp, "notify")
    ctl = os.path.join(tmp, "ctl.sock")
    store = FdStore(notify)
    env = dict(os.environ, NOTIFY_SOCKET=notify)
    print("1..11", flush=True)

    keeper = subprocess.Popen(
        [CPR_EXEC, "run", "--fd-store", "--json", "--socket", ctl, "--",
         APP], stdout=subprocess.PIPE, env=env, text=True)
    procs.append(keeper)
    started = json.loads(keeper.stdout.readline())
    program_pids.append(started["pid"])
    ok(started["keeper_pid"] == keeper.pid and started["pid"] != keeper.pid,
       "run --json names the keeper and the program")
    st = wait_for(lambda: status(ctl), store, "the program to serve")
    names = wait_for(lambda: store.names() if any(
        n.endswith("-blob") for n in store.names()) else None,
        store, "the state in the fd store")
    ok(st is not None and names is not None, "the keeper put the state in "
       f"the fd store: {names}")
    if not names:
        return
    data_fd_no = [f["fd"] for f in st["fds"] if f["name"] == "data"][0]
    data_name = [n for n in names if n.endswith(f"-fd-{data_fd_no}")]
    ok(len(data_name) == 1 and any(n.endswith("-cmd") for n in names),
       "one fd per name: the command line, the blob and fd "
       f"{data_fd_no} ('data')")
    # Our own dup: the store closes its copy when the set is replaced.
    data = os.dup(store.fds[data_name[0]][0])
    before = counter_of(data)
    ok(before >= 1, f"the program's memfd, through the store: counter "
       f"{before}")

    # The keeper dies, and systemd kills the rest of the unit.
    os.kill(keeper.pid, signal.SIGKILL)
    keeper.wait()
    os.kill(started["pid"], signal.SIGKILL)
    time.sleep(0.2)
    store.pump()

    # systemd starts the unit again with the store's fds from 3 on.
    order = sorted(store.fds)
    passed = [store.fds[n][0] for n in order]
    for n in order:
        if len(store.fds[n]) != 1:
            ok(False, f"name {n} holds {len(store.fds[n])} fds")

    def as_systemd():
        # Above every fd the child may use, then down to 3, 4, ...
        high = [os.dup(fd) for fd in passed]
        high = [os.dup2(fd, 100 + i) for i, fd in enumerate(high)]
        for i in range(len(high)):
            os.dup2(100 + i, 3 + i, inheritable=True)
            os.close(100 + i)

    env2 = dict(env, LISTEN_FDS=str(len(passed)),
                LISTEN_FDNAMES=":".join(order))
    # LISTEN_PID is the pid that execs the keeper: sh's own, kept by exec.
    keeper2 = subprocess.Popen(
        ["/bin/sh", "-c", 'LISTEN_PID=$$ exec "$@"', "sh", CPR_EXEC, "run",
         "--fd-store", "--json", "--socket", ctl, "--", APP],
        stdout=subprocess.PIPE, env=env2, text=True, preexec_fn=as_systemd,
        close_fds=False)
    procs.append(keeper2)
    started2 = json.loads(keeper2.stdout.readline())
    program_pids.append(started2["pid"])
    st2 = wait_for(lambda: (lambda s: s if s and s["last_update"] and
                            s["last_update"]["result"] == "restarted"
                            else None)(status(ctl)),
                   store, "the restarted program to serve")
    ok(st2 is not None, "the new keeper restarted the program from the "
       "store (last update: restarted)")
    if not st2:
        keeper2.kill()
        return
    ok(st2["pid"] == started2["pid"] and st2["keeper"]["pid"] == keeper2.pid,
       "status names the new program and the new keeper")
    ok(st2["keeper"]["restarts"] == 1 and "fd store" in
       (st2["keeper"]["last_cause"] or ""),
       f"the keeper says why: {st2['keeper']['last_cause']}")
    ok(counter_of(data) == before + 1,
       f"the same memfd counted the restart ({before} -> "
       f"{counter_of(data)}): not a fresh start")
    # The new set is stored before the old one is removed: wait for both.
    newer = wait_for(lambda: store.names() if not set(store.names()) &
                     set(names) and any(n.endswith("-blob")
                                        for n in store.names())
                     else None, store, "the new state in the store")
    ok(newer is not None and not set(newer) & set(names),
       "the restarted program's state replaced the old set in the store")

    os.kill(keeper2.pid, signal.SIGTERM)
    # Read the notify socket meanwhile, as systemd does: its queue is
    # short (net.unix.max_dgram_qlen), and a keeper emptying the store
    # blocks on a full one, as sd_notify() would.
    wait_for(lambda: keeper2.poll() is not None, store, "the keeper to exit",
             20)
    rc = keeper2.wait(timeout=1)
    ok(rc == 0, f"SIGTERM: the program stopped cleanly, keeper exit {rc}")
    wait_for(lambda: not store.names(), store, "the store to empty", 5)
    ok(not store.names(), "a clean stop empties the fd store")


procs = []
program_pids = []

if __name__ == "__main__":
    try:
        main()
    finally:
        # Whatever failed, nothing may outlive the test (and hold its
        # stdout open).
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for pid in program_pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    sys.exit(1 if failed else 0)
