#!/usr/bin/python3
"""Stores crossed: the same writes are made on the real qubesd
(real-qubesd.py) and on ours, both are stopped, and each store is then
loaded by the other daemon. Compared:

  * the two qubes.xml files, line by line (new qubes' UUIDs, disposables'
    numbers and the daemons' own directories normalised): what a file
    format can tell apart;
  * the real daemon that made the writes against ours started on its store
    (sweep.py's reads): how ours reads what Qubes wrote;
  * the same against the real daemon started on our store: how Qubes reads
    what ours wrote (a user going back to Qubes' own daemon);
  * the same against the real daemon started on its own store: what Qubes
    keeps only in memory (a difference in the two above that shows here too
    is Qubes' own), and whether it can load its store at all.

  crossload.py [--as QUBE ...] [--seed N --calls N [FAMILY ...]] [LIST.tsv ...]

Writes come from sweep lists (their RESET lines are ignored: the writes of
all the lists go on one store) and, with --calls, from compare.py's random
families (default: vmprop gprop feature tag label create firewall). Not
differences: as sweep.py.
"""
import argparse
import difflib
import os
import random
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402
from compare import FIXTURE, Daemon, oracle_common  # noqa: E402
from sweep import read_all, read_writes, write_both  # noqa: E402

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
DISPID_RE = re.compile(r'(<property name="dispid">)\d+(</property>)|(\bdisp)\d+\b')
EMPTY_DEVICES_RE = re.compile(r'^\s*<devices class="[^"]*"/>$')


def normalised_store(d):
    """The daemon's qubes.xml with what is random or local replaced."""
    known = oracle_common.fixture_uuids(FIXTURE)
    with open(d + "/qubes.xml", encoding="utf8") as f:
        text = f.read().replace(d + "/base", "@BASE@").replace(d, "@DIR@")
    seen = {}

    def uuid(m):
        u = m.group(0)
        if u in known:
            return u
        return seen.setdefault(u, f"<uuid-{len(seen)}>")

    text = UUID_RE.sub(uuid, text)
    text = DISPID_RE.sub(lambda m: (m.group(1) + "N" + m.group(2)) if m.group(1) else m.group(3) + "N", text)
    out = []
    for line in text.splitlines():
        # Qubes writes an empty <devices class="X"/> for each class used since
        # it loaded the store (a read will do), and nothing for one that was not
        if EMPTY_DEVICES_RE.match(line):
            continue
        out.append(line)
    # Qubes' tags are a Python set: their order is the string hashes'
    i = 0
    while i < len(out):
        if out[i].strip() == "<tags>":
            j = out.index("      </tags>", i)
            out[i + 1 : j] = sorted(out[i + 1 : j])
            i = j
        i += 1
    return out


def writes(a):
    steps = [s for s in read_writes(a.lists) if s != "RESET"]
    if a.calls:
        r = random.Random(a.seed)
        fams = a.families or ["vmprop", "gprop", "feature", "tag", "label", "create", "firewall"]
        for _ in range(a.calls):
            m, d, arg, p, s = compare.gen(r, r.choice(fams))
            if s == "dom0" and m != "RAW":
                steps.append((m, d, arg, p))
    # what the oracle cannot do outside Qubes OS (enable a systemd unit,
    # sanitise notes with libqubes-pure) is made on neither daemon, nor
    # disposables named by a random number (the reads could not be paired),
    # nor a reset of default_kernel (with no kernel installed, after which
    # Qubes fails every save: its store would stop following its state)
    skip = {"admin.vm.notes.Set", "admin.vm.CreateDisposable", ("admin.vm.property.Set", "autostart"),
            ("admin.property.Reset", "default_kernel")}
    return [x for x in steps if x[0] not in skip and (x[0], x[2]) not in skip]


def qube_dirs(d):
    """Each fixture qube's own directory, which the fixture leaves out for
    most: without it the real daemon fails (and drops the call) where a
    dom0 would have the directory, saving firewall rules or resizing a volume."""
    with open(d + "/qubes.xml", encoding="utf8") as f:
        text = f.read()
    for klass, name in re.findall(r'<domain id="[^"]*" class="(\w+)">\s*<properties>(?:(?!</properties>).)*?<property name="name">([^<]+)</property>', text, re.S):
        if klass != "AdminVM":
            os.makedirs(os.path.join(d, "base", "vm-templates" if klass == "TemplateVM" else "appvms", name), exist_ok=True)


def sweep(title, left, right, sources):
    """sweep.py's reads of two daemons; prints each distinct difference and
    returns them (method, argument, start of the left daemon's answer)."""
    seen = set()
    calls, total = read_all(left, right, sources, seen, title)
    print(f"-- {title}: {calls} reads, {total} differ, {len(seen)} distinct", flush=True)
    return seen


def sweep_started(title, reference, daemon, source, sources):
    """Starts `daemon` on a copy of the store in `source` and sweeps it
    against `reference`; None if it cannot load the store."""
    try:
        daemon.start(source, source + "/base", source)
    except SystemExit as e:
        print(f"-- {title}: the daemon cannot load the store ({e})", flush=True)
        return None
    try:
        return sweep(title, reference, daemon, sources)
    finally:
        daemon.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--as", dest="sources", action="append", default=[], help="also read as this management qube")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--calls", type=int, default=0, help="random writes after the lists' (compare.py's families)")
    ap.add_argument("--family", dest="families", action="append", default=[])
    ap.add_argument("lists", nargs="*")
    a = ap.parse_args()
    real = Daemon("/tmp/xl-1-real", True).start()
    ours = Daemon("/tmp/xl-2-ours", False).start()
    qube_dirs(real.d)
    qube_dirs(ours.d)
    daemons = [real, ours]
    failed = 0
    try:
        steps = writes(a)
        refused = sum(not write_both(real, ours, step).startswith(b"0\0") for step in steps)
        print(f"-- {len(steps)} writes ({refused} refused or dropped by the real daemon)", flush=True)
        ours.stop(clean=True)

        diff = list(difflib.unified_diff(normalised_store(real.d), normalised_store(ours.d), "real qubes.xml", "ours qubes.xml", lineterm="", n=2))
        print("\n".join(diff) if diff else "-- the two qubes.xml files are the same", flush=True)
        failed += bool(diff)

        # the real daemon, still running, saved its store after each write
        found = {}
        for title, daemon, source in (
            ("ours reading the real store", Daemon("/tmp/xl-3-oursonreal", False), real.d),
            ("the real daemon reading our store", Daemon("/tmp/xl-4-realonours", True), ours.d),
            # what the real daemon keeps only in memory shows above as a
            # difference in both; whether it can load its own store tells which
            ("the real daemon reading its own store", Daemon("/tmp/xl-5-realonreal", True), real.d),
        ):
            daemons.append(daemon)
            found[title] = sweep_started(title, real, daemon, source, a.sources)
            if found[title] is None and not (daemon.real and source == real.d):
                failed += 1  # Qubes failing to load its own store is Qubes' own
        # a difference the real daemon shows on its own store too is not ours
        own = found.pop("the real daemon reading its own store") or set()
        ours_too = set().union(*(x for x in found.values() if x)) - own
        print(f"-- {len(ours_too)} distinct differences not shown by the real daemon on its own store", flush=True)
        failed += len(ours_too)
    finally:
        for x in daemons:
            x.stop()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
