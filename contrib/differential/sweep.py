#!/usr/bin/python3
"""Exhaustive read sweep: after each write of a list, every fact the Admin
API can read (every property of every qube and of the installation with its
default and help, features and their Check* lookups, tags, labels, pools,
volumes, firewall, devices) is read from the real qubesd (real-qubesd.py) and
from ours, and compared. Random calls (compare.py) seldom look at the right
place after the right write; this looks everywhere after every one.

  sweep.py [--as QUBE ...] LIST.tsv [...]

A list has one write per line, tab-separated: method, destination,
argument, payload (backslash escapes allowed; `@DIR@` is each daemon's own
directory); `RESET` starts both daemons
afresh; `#` starts a comment. Reads are made as dom0 and as each --as qube
(through 30-compare.policy). Not differences: as compare.py, and the known
kinds in README.md.
"""
import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402
from compare import DISPID_RE, FIXTURE, Daemon, oracle_common  # noqa: E402

DEVICE_CLASSES = ("pci", "block", "mic")
CHECKS = ("CheckWithTemplate", "CheckWithNetvm", "CheckWithAdminVM", "CheckWithTemplateAndAdminVM")


def lines(reply):
    """The lines of an OK reply (nothing for an exception)."""
    if not reply.startswith(b"0\0"):
        return []
    return [x for x in reply[2:].decode("utf8", "replace").split("\n") if x]


class Sweep:
    def __init__(self, real, ours, src):
        uuids = oracle_common.fixture_uuids(FIXTURE)
        self.real, self.ours, self.src = real, ours, src
        self.norm_real = oracle_common.Normaliser(real.d + "/base", uuids)
        self.norm_ours = oracle_common.Normaliser(ours.d + "/base", uuids)
        self.calls, self.diffs = 0, []

    def both(self, m, d, a=""):
        """One read from both; the union of what they list is read next."""
        self.calls += 1
        ra = DISPID_RE.sub(b"<dispid>", self.norm_real(m, self.real.call(m, d, a, b"", self.src)))
        ob = DISPID_RE.sub(b"<dispid>", self.norm_ours(m, self.ours.call(m, d, a, b"", self.src)))
        # each daemon's own directory (a pool added under @DIR@)
        ra, ob = ra.replace(self.real.d.encode(), b"@DIR@"), ob.replace(self.ours.d.encode(), b"@DIR@")
        if a == "dispid":  # random on both sides; GetAll's line is DISPID_RE's
            ra, ob = (re.sub(rb"int \d+$", b"int <dispid>", x) for x in (ra, ob))
        if ra != ob and not (ra == b"" and ob.startswith(b"2\0") and not compare.internal(ob)) and not compare.environmental(m, d, ra):
            self.diffs.append((m, d, a, ra, ob))
        return sorted(set(lines(ra)) | set(lines(ob)))

    def run(self):
        vms = sorted({x.split(" ")[0] for x in self.both("admin.vm.List", "dom0")})
        self.both("admin.property.GetAll", "dom0")
        for p in self.both("admin.property.List", "dom0"):
            for m in ("Get", "GetDefault", "Help"):
                self.both("admin.property." + m, "dom0", p)
        for label in self.both("admin.label.List", "dom0"):
            self.both("admin.label.Get", "dom0", label)
            self.both("admin.label.Index", "dom0", label)
        for pool in self.both("admin.pool.List", "dom0"):
            for m in ("Info", "volume.List", "UsageDetails"):
                self.both("admin.pool." + m, "dom0", pool)
        features = {"nosuch", "service.x"}
        for vm in vms:
            self.both("admin.vm.List", vm)
            self.both("admin.vm.property.GetAll", vm)
            for p in self.both("admin.vm.property.List", vm):
                for m in ("Get", "GetDefault", "Help"):
                    self.both("admin.vm.property." + m, vm, p)
            for f in self.both("admin.vm.feature.List", vm):
                features.add(f)
                self.both("admin.vm.feature.Get", vm, f)
            for tag in self.both("admin.vm.tag.List", vm):
                self.both("admin.vm.tag.Get", vm, tag)
            for v in self.both("admin.vm.volume.List", vm):
                self.both("admin.vm.volume.Info", vm, v)
                self.both("admin.vm.volume.ListSnapshots", vm, v)
            self.both("admin.vm.firewall.Get", vm)
            for dc in DEVICE_CLASSES:
                for m in ("Assigned", "Attached", "Available"):
                    self.both(f"admin.vm.device.{dc}.{m}", vm)
        for vm in vms:
            for f in sorted(features):
                for m in CHECKS:
                    self.both("admin.vm.feature." + m, vm, f)
        return self.diffs


def write_both(real, ours, step):
    """One write (method, dest, arg, payload with @DIR@) on both daemons, each
    given its own directory; the real daemon's answer. A different answer is
    shown, not counted: the write itself is compare.py's business."""
    m, d, arg, p = step
    ra = real.call(m, d, arg, p.replace(b"@DIR@", real.d.encode()), "dom0")
    ob = ours.call(m, d, arg, p.replace(b"@DIR@", ours.d.encode()), "dom0")
    if ra.replace(real.d.encode(), b"@DIR@") != ob.replace(ours.d.encode(), b"@DIR@"):
        print(f"-- write {step!r}: real {ra[:160]!r}, ours {ob[:160]!r}", flush=True)
    return ra


def read_all(left, right, sources, seen, title):
    """Every read, as dom0 and as each of `sources`, from both daemons; prints
    each difference not in `seen` (and adds it); (reads, differences)."""
    calls = total = 0
    for src in ["dom0"] + sources:
        s = Sweep(left, right, src)
        for m, d, arg, ra, ob in s.run():
            total += 1
            key = (m, arg, ra[:50])
            if key in seen:
                continue
            seen.add(key)
            print(f"== {title} as {src}: {m}+{arg} -> {d}\n   {left.d}: {ra[:300]!r}\n   {right.d}: {ob[:300]!r}", flush=True)
        calls += s.calls
    return calls, total


def read_writes(paths):
    """The steps of write lists: "RESET", or (method, dest, arg, payload bytes, still with @DIR@)."""
    steps = []
    for path in paths:
        with open(path, encoding="utf8") as f:
            for x in f:
                if not x.strip() or x.startswith("#"):
                    continue
                if x.strip() == "RESET":
                    steps.append("RESET")
                    continue
                m, d, arg, p = (x.rstrip("\n").split("\t") + ["", "", ""])[:4]
                steps.append((m, d, arg, p.encode("utf8").decode("unicode_escape").encode("latin1")))
    return steps


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--as", dest="sources", action="append", default=[], help="also read as this management qube")
    ap.add_argument("lists", nargs="+")
    a = ap.parse_args()
    real = Daemon("/tmp/sweep-real", True).start()
    ours = Daemon("/tmp/sweep-ours", False).start()
    steps = [None] + read_writes(a.lists)
    seen, calls, total = set(), 0, 0
    try:
        for step in steps:
            if step == "RESET":
                real.start()
                ours.start()
                continue
            if step:
                write_both(real, ours, step)
            reads, differ = read_all(real, ours, a.sources, seen, f"after {step!r}")
            calls, total = calls + reads, total + differ
    finally:
        real.stop()
        ours.stop()
    print(f"{len(steps)} steps, {calls} reads, {total} differ, {len(seen)} distinct")


if __name__ == "__main__":
    main()
