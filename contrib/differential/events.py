#!/usr/bin/python3
"""The events each write fires, from the real qubesd and from ours: both
daemons hold admin.Events open (as dom0, and as each --as management qube,
filtered through 30-compare.policy), take the same random writes
(compare.py's families) or the writes of sweep lists, and after each write
the events that arrived before a sentinel (a feature set on dom0) are
compared, in order.

  events.py [--seed N] [--calls N] [--as QUBE ...] [--list LIST.tsv ...] [FAMILY ...]
"""
import argparse
import os
import random
import re
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402
import sweep  # noqa: E402
from compare import FIXTURE, Daemon, oracle_common, wire  # noqa: E402

READS = ("Get", "GetAll", "GetDefault", "List", "Help", "Info", "Index", "ListSnapshots", "Assigned", "Available", "Attached")
DISPID = re.compile(rb"\b(dispid|newvalue|oldvalue)\x00(\d{1,4})\x00")


class Subscription:
    """admin.Events held open; events parsed as they come."""

    def __init__(self, sock_path, src):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(sock_path)
        self.s.sendall(wire.header("admin.Events", "dom0", "", src))
        self.s.shutdown(socket.SHUT_WR)
        self.buf, self.events, self.lock = b"", [], threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while True:
            try:
                d = self.s.recv(65536)
            except OSError:
                return
            if not d:
                return
            with self.lock:
                evs, self.buf = wire.parse_events(self.buf + d)
                self.events += evs

    def take_until(self, subject, name, timeout=5.0):
        """Events before the first `name` of `subject` (removed, with what follows up to the
        sentinel's own domain-feature-set); None on a time-out."""
        subject, name = subject.encode(), name.encode()
        after = name.replace(b"-pre-", b"-")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                at = next((i for i, e in enumerate(self.events) if e[0] == subject and e[1] == name), None)
                if at is not None:
                    end = next((j for j in range(at, len(self.events)) if self.events[j][1] == after), None)
                    if end is not None:
                        taken, self.events = self.events[:at], self.events[end + 1:]
                        return taken
            time.sleep(0.01)
        return None


def writes_from(r, fams):
    while True:
        m, d, a, p, s = compare.gen(r, r.choice(fams))
        if m != "RAW" and m.rsplit(".", 1)[-1] not in READS and not m.startswith("admin.vm.feature.Check") and s == "dom0":
            yield m, d, a, p


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--as", dest="sources", action="append", default=[])
    ap.add_argument("--list", dest="lists", action="append", default=[])
    ap.add_argument("families", nargs="*")
    a = ap.parse_args()
    real = Daemon(f"/tmp/events-real-{a.seed}", True).start()
    ours = Daemon(f"/tmp/events-ours-{a.seed}", False).start()
    uuids = oracle_common.fixture_uuids(FIXTURE)
    norms = {real: oracle_common.Normaliser(real.d + "/base", uuids), ours: oracle_common.Normaliser(ours.d + "/base", uuids)}
    sources = ["dom0"] + a.sources
    subs = {d: {s: Subscription(d.sock, s) for s in sources} for d in (real, ours)}
    for dmn in (real, ours):  # the subscriptions' own first events
        dmn.call("admin.vm.feature.Set", "dom0", "sentinel-start", b"1", "dom0")
        for sub in subs[dmn].values():
            sub.take_until("dom0", "domain-feature-pre-set:sentinel-start")
    if a.lists:
        # one daemon pair for the whole run: a list's RESETs are not followed
        steps = [x for x in sweep.read_writes(a.lists) if x != "RESET"]
    else:
        gen = writes_from(random.Random(a.seed), a.families or ["vmprop", "gprop", "feature", "tag", "label", "create", "firewall", "volume", "pool"])
        steps = [next(gen) for _ in range(a.calls)]
    seen, differ = set(), 0
    try:
        for i, (m, d, arg, p) in enumerate(steps):
            got = {}
            for dmn in (real, ours):
                p2 = p.replace(b"@DIR@", dmn.d.encode())
                reply = dmn.call(m, d, arg, p2, "dom0")
                dmn.call("admin.vm.feature.Set", "dom0", f"sentinel-{i}", b"1", "dom0")
                got[dmn] = [reply]
                for s in sources:
                    evs = subs[dmn][s].take_until("dom0", f"domain-feature-pre-set:sentinel-{i}")
                    if evs is None:
                        sys.exit(f"events.py: no sentinel from {'real' if dmn.real else 'ours'} as {s} after {m} {d} {arg}")
                    frames = []
                    for subj, ev, kv in evs:
                        body = subj + b"\0" + ev + b"\0" + b"".join(k + b"\0" + v + b"\0" for k, v in kv)
                        body = body.replace(dmn.d.encode(), b"@DIR@")
                        frames.append(norms[dmn]("admin.Events", body))
                    if m == "admin.vm.CreateDisposable" and reply.startswith(b"0\0disp"):
                        # the new qube's number is random on both sides
                        frames = [f.replace(reply[2:], b"disp<N>") for f in frames]
                    got[dmn].append(frames)
            if norms[real](m, got[real][0]) == b"":
                continue  # the real daemon dropped the call: what it fired before failing is not ours to match
            if compare.environmental(m, d, got[real][0]):
                continue
            for k, s in enumerate(sources):
                r_ev, o_ev = got[real][k + 1], got[ours][k + 1]
                if r_ev != o_ev:
                    differ += 1
                    key = (m, arg, s, tuple(r_ev[:1]))
                    if key in seen:
                        continue
                    seen.add(key)
                    print(f"== {m}+{arg} -> {d} payload={p[:80]!r} as {s}")
                    print(f"   reply real {got[real][0][:100]!r} ours {got[ours][0][:100]!r}")
                    print(f"   real: {r_ev}")
                    print(f"   ours: {o_ev}", flush=True)
    finally:
        real.stop()
        ours.stop()
    print(f"{len(steps)} writes, {differ} differ, {len(seen)} distinct")


if __name__ == "__main__":
    main()
