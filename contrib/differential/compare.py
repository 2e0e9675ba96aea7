#!/usr/bin/python3
"""Random Admin API calls, the same sequence to the real qubesd (the oracle,
real-qubesd.py) and to ours, both started from the conformance fixture;
prints every distinct difference with the writes that led to it.

  compare.py [--seed N] [--calls N] [--history] [FAMILY ...]

Families: vmprop gprop feature tag label misc create firewall volume pool
device extra src raw. After a difference both daemons start afresh (their states may
have parted). Not differences: the real daemon dropping the connection
(an unhandled Python error) where ours answers with an EXCEPTION, as the
conformance replay's --lenient; and what depends on the oracle's
environment (README.md).
"""
import argparse
import collections
import os
import random
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CONF = os.path.join(ROOT, "..", "shared", "conformance", "qubesd")
sys.path.insert(0, CONF)
import oracle_common  # noqa: E402
import wire  # noqa: E402

FIXTURE = os.path.join(CONF, "fixtures", "default")
# a disposable's dispid is random on both sides, and so is its IP address
DISPID_RE = re.compile(rb"^dispid default=False type=int \d+$|\b10\.138\.\d+\.\d+\b", re.M)
POLICY = os.path.join(HERE, "30-compare.policy")


class Daemon:
    """One daemon on a fresh copy of the fixture in `d`."""

    def __init__(self, d, real):
        self.d, self.real, self.proc = d, real, None

    def start(self, source=FIXTURE, base_token="@BASE@", dir_token=None):
        """Starts on a copy of `source` (a store and its base/ directory), in
        whose qubes.xml `base_token` stands for the base directory and
        `dir_token` (if given) for `source` itself, whose other directories
        (pools added under @DIR@) are copied too."""
        self.stop()
        subprocess.run(["rm", "-rf", self.d], check=True)
        os.makedirs(self.d + "/base")
        os.makedirs(self.d + "/run")
        os.makedirs(self.d + "/policy.d")
        os.makedirs(self.d + "/backup")
        subprocess.run(["cp", "-a", source + "/base/.", self.d + "/base/"], check=True)
        subprocess.run(["cp", POLICY, self.d + "/policy.d/"], check=True)
        with open(source + "/qubes.xml") as f, open(self.d + "/qubes.xml", "w") as out:
            text = f.read().replace(base_token, self.d + "/base")
            out.write(text.replace(dir_token, self.d) if dir_token else text)
        if dir_token:
            for x in os.listdir(source):
                if x not in ("base", "run", "policy.d") and os.path.isdir(os.path.join(source, x)):
                    subprocess.run(["cp", "-a", os.path.join(source, x), self.d + "/"], check=True)
        log = open(self.d + ".log", "w")
        if self.real:
            self.sock = self.d + "/qubesd.sock"
            cmd = [sys.executable, os.path.join(HERE, "real-qubesd.py"), self.d + "/qubes.xml", self.d + "/base", self.sock, self.d + "/policy.d"]
        else:
            self.sock = self.d + "/run/qubesd.sock"
            cmd = ["node", os.path.join(ROOT, "bin", "qubesd"), "--store", self.d + "/qubes.xml", "--base-dir", self.d + "/base",
                   "--socket-dir", self.d + "/run", "--policy-dir", self.d + "/policy.d", "--log", "none",
                   "--backup-profile-dir", self.d + "/backup"]
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, cwd="/tmp")
        for _ in range(150):
            try:
                if wire.call(self.sock, "admin.vm.List", "dom0")[0].startswith(b"0\0"):
                    return self
            except OSError:
                pass
            if self.proc.poll() is not None:
                sys.exit(f"compare.py: {cmd[1]} exited; see {self.d}.log")
            time.sleep(0.1)
        sys.exit(f"compare.py: {cmd[1]} did not start; see {self.d}.log")

    def stop(self, clean=False):
        """Kills the daemon; with `clean`, asks it to stop (SIGTERM) and waits."""
        if self.proc:
            if clean:
                self.proc.terminate()
                try:
                    self.proc.wait(30)
                except subprocess.TimeoutExpired:
                    sys.exit(f"compare.py: the daemon in {self.d} did not stop")
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def call(self, m, d, a, p, s):
        try:
            if m == "RAW":  # a whole request, as bytes, in the payload
                return wire.call_raw(self.sock, p)[0]
            return wire.call(self.sock, m, d, a, p, s)[0]
        except OSError as e:
            return b"<" + repr(e).encode() + b">"


VMS = ["new1", "new2", "dom0", "debian-12", "fedora-41", "fedora-41-dvm", "personal", "standalone", "sys-firewall", "sys-net",
       "untrusted", "vault", "win-hvm", "work"]
BADVMS = ["nosuch", "", "dom0 ", "-x", "a" * 32, "uuid:00000000-0000-0000-0000-000000000000",
          "uuid:8e9f2dc1-e8a0-4b1a-8363-e2723c8a8a56", "uuid:bad", "Work", "@adminvm", "disp1"]
VALUES = ["", "0", "1", "-1", "2", "10", "400", "4000", "100000000000000000000", " 1", "1 ", "1.5", "0x10", "True", "False",
          "true", "false", "yes", "no", "on", "abc", "sys-net", "sys-firewall", "personal", "work", "dom0", "fedora-41",
          "fedora-41-dvm", "debian-12", "standalone", "win-hvm", "nosuch", "red", "blue", "black", "purple", "hvm", "pv", "pvh",
          "HVM", "uefi", "default", "none", "None", "varlibqubes", "linux-kernel", "6.6.1", "user", "root", "us", "de+neo+",
          "00:16:3e:5e:6c:00", "00:16:3E:5E:6C:00", "10.137.0.99", "fd09::1", "a\tb", "é", "a" * 40, "-", "_x", "x.y", "$x"]
VPROPS = ["autostart", "backup_timestamp", "debug", "default_user", "devices_denied", "dns", "gateway", "icon",
          "include_in_backups", "installed_by_rpm", "ip", "ip6", "kernel", "keyboard_layout", "klass", "label", "mac", "maxmem",
          "memory", "name", "provides_network", "qid", "qrexec_timeout", "shutdown_timeout", "start_time", "stubdom_mem",
          "stubdom_uuid", "stubdom_xid", "template_for_dispvms", "updateable", "uuid", "vcpus", "virt_mode", "visible_gateway",
          "visible_ip", "visible_netmask", "xid", "audiovm", "bootmode", "default_dispvm", "guivm", "kernelopts",
          "management_dispvm", "netvm", "template", "nosuch", "dispid", "auto_cleanup", "boot_mode", "", "a b"]
GPROPS = ["check_updates_vm", "clockvm", "default_audiovm", "default_dispvm", "default_guivm", "default_kernel",
          "default_netvm", "default_pool", "default_pool_kernel", "default_pool_private", "default_pool_root",
          "default_pool_volatile", "default_qrexec_timeout", "default_shutdown_timeout", "default_template",
          "management_dispvm", "maxmem", "no_cpus", "stats_interval", "updatevm", "nosuch", ""]
FEATS = ["qrexec", "gui", "service.crond", "menu-items", "os", "x", "new", "a.b", "a b", "", "é", "internal",
         "supported-service.x", "boot-mode.active", "template-name", "-x", "a" * 100, "updates-available"]
TAGS = ["created-by-dom0", "audiovm-dom0", "guivm-dom0", "x", "a-b", "a_b", "a.b", "a b", "", "é", "1", "created-by-work",
        "A" * 40, "-x", "x:y"]
LABELS = ["red", "orange", "yellow", "green", "gray", "blue", "purple", "black", "teal", "nosuch", "", "Red", "a b", "0x123456"]
COLORS = ["0x00ff00", "0xFF0000", "0x1234567", "#00ff00", "00ff00", "red", "", "0x", "0xgggggg", "0x00ff00\n"]
FIREWALL = ["action=accept", "action=drop", "action=forward", "proto=tcp", "proto=udp", "proto=icmp", "proto=sctp",
            "dsthost=10.0.0.1", "dsthost=10.0.0.0/8", "dsthost=qubes-os.org", "dsthost=fd00::/8", "dsthost=10.0.0.0/33",
            "dsthost=-bad", "dstports=80", "dstports=80-443", "dstports=443-80", "dstports=0", "dstports=70000", "icmptype=8",
            "icmptype=300", "specialtarget=dns", "specialtarget=x", "expire=1234567890", "expire=+100", "comment=hello world",
            "comment=", "foo=bar", "action", ""]


def gen(r, fam):
    """One call of a family: (method, dest, arg, payload, source)."""
    vm = r.choice(VMS) if r.random() < 0.93 else r.choice(BADVMS)
    src = "dom0" if r.random() < 0.95 else r.choice(["work", "personal", "nosuch"])

    def value():
        if r.random() < 0.97:
            return r.choice(VALUES).encode()
        return bytes(r.randrange(256) for _ in range(r.randrange(1, 5)))

    if fam in ("vmprop", "gprop"):
        m = r.choice(["Get", "GetDefault", "Help", "Set", "Set", "Set", "Reset", "GetAll", "List"])
        arg = "" if m in ("GetAll", "List") else r.choice(VPROPS if fam == "vmprop" else GPROPS)
        dest = vm if fam == "vmprop" else ("dom0" if r.random() < 0.95 else vm)
        prefix = "admin.vm.property" if fam == "vmprop" else "admin.property"
        return (f"{prefix}.{m}", dest, arg, value() if m == "Set" else b"", src)
    if fam == "feature":
        m = r.choice(["Get", "Set", "Set", "Remove", "List", "CheckWithTemplate", "CheckWithNetvm", "CheckWithAdminVM",
                      "CheckWithTemplateAndAdminVM"])
        return (f"admin.vm.feature.{m}", vm, "" if m == "List" else r.choice(FEATS), value() if m == "Set" else b"", src)
    if fam == "tag":
        m = r.choice(["Get", "Set", "Remove", "List"])
        return (f"admin.vm.tag.{m}", vm, "" if m == "List" else r.choice(TAGS), b"", src)
    if fam == "label":
        m = r.choice(["Get", "Index", "List", "Create", "Remove"])
        return (f"admin.label.{m}", "dom0", "" if m == "List" else r.choice(LABELS),
                r.choice(COLORS).encode() if m == "Create" else b"", src)
    if fam == "misc":
        m = r.choice(["admin.vm.List", "admin.vmclass.List", "admin.deviceclass.List", "admin.pool.List", "admin.pool.Info",
                      "admin.pool.volume.List", "admin.vm.volume.List", "admin.vm.volume.Info", "admin.vm.volume.ListSnapshots",
                      "admin.vm.firewall.Get", "admin.vm.notes.Get", "admin.vm.CurrentState", "admin.vm.device.pci.Assigned",
                      "admin.vm.device.block.Assigned", "admin.vm.device.denied.List"])
        arg = ""
        if m in ("admin.pool.Info", "admin.pool.volume.List"):
            arg = r.choice(["varlibqubes", "linux-kernel", "nosuch", ""])
        if m in ("admin.vm.volume.Info", "admin.vm.volume.ListSnapshots"):
            arg = r.choice(["root", "private", "volatile", "kernel", "nosuch", ""])
        dest = vm if m.startswith("admin.vm.") and m != "admin.vm.List" else ("dom0" if r.random() < 0.8 else vm)
        return (m, dest, arg, b"", src)
    if fam == "create":
        m = r.choice(["admin.vm.Create.AppVM", "admin.vm.Create.TemplateVM", "admin.vm.Create.StandaloneVM",
                      "admin.vm.Create.DispVM", "admin.vm.CreateInPool.AppVM", "admin.vm.Remove"])
        if m == "admin.vm.Remove":
            return (m, r.choice(VMS), "", b"", src)
        name = r.choice(["new1", "new2", "work", "dom0", "a b", "", "x" * 32, "-n", "n.1", "disp12", "Domain-0", "none", "default"])
        parts = [f"name={name}", f"label={r.choice(['red', 'blue', 'nosuch', ''])}"]
        if "InPool" in m:
            parts.append(r.choice(["pool=varlibqubes", "pool:root=varlibqubes", "pool=nosuch", "pool:foo=varlibqubes"]))
        if r.random() < 0.2:
            parts.append(r.choice(["foo=bar", "name=x", "label", "a b"]))
        r.shuffle(parts)
        arg = r.choice(["", "fedora-41", "debian-12", "work", "nosuch", "fedora-41-dvm"])
        return (m, "dom0", arg, " ".join(parts).encode(), src)
    if fam == "firewall":
        m = r.choice(["admin.vm.firewall.Get", "admin.vm.firewall.Set", "admin.vm.firewall.Set", "admin.vm.firewall.Reload"])
        if m != "admin.vm.firewall.Set":
            return (m, vm, "", b"", src)
        lines = []
        for _ in range(r.randrange(0, 4)):
            parts = [r.choice(["action=accept", "action=drop"])] if r.random() < 0.85 else []
            parts += [r.choice(FIREWALL) for _ in range(r.randrange(0, 4))]
            lines.append(" ".join(parts))
        payload = "".join(line + "\n" for line in lines)
        return (m, vm, "", (payload.rstrip("\n") if r.random() < 0.1 else payload).encode(), src)
    if fam == "volume":
        m = r.choice(["Info", "ListSnapshots", "List", "Set.revisions_to_keep", "Set.rw", "Set.ephemeral", "Resize", "Revert",
                      "Clear"])
        vol = r.choice(["root", "private", "volatile", "kernel", "nosuch"])
        if m == "List":
            return ("admin.vm.volume.List", vm, "", b"", src)
        payload = b""
        if m.startswith("Set."):
            payload = r.choice([b"0", b"1", b"2", b"-1", b"True", b"False", b"true", b"x", b"", b" 1"])
        elif m == "Resize":
            payload = r.choice([b"0", b"1073741824", b"4294967296", b"21474836480", b"1", b"-1", b"x", b""])
        elif m == "Revert":
            payload = r.choice([b"", b"x", b"2020-01-01"])
        return (f"admin.vm.volume.{m}", vm, vol, payload, src)
    if fam == "pool":
        m = r.choice(["admin.pool.Add", "admin.pool.Remove", "admin.pool.Set.revisions_to_keep",
                      "admin.pool.Set.ephemeral_volatile", "admin.pool.Info", "admin.pool.List", "admin.pool.UsageDetails"])
        if m == "admin.pool.Add":
            parts = r.sample(["name=p2", "name=varlibqubes", "dir_path=/tmp/compare-pool", "revisions_to_keep=2",
                              "revisions_to_keep=x", "ephemeral_volatile=True", "foo=bar", "name=a b", "dir_path=relative",
                              "name="], r.randrange(0, 4))
            return (m, "dom0", r.choice(["file", "file-reflink", "lvm_thin", "nosuch", ""]), "\n".join(parts).encode(), src)
        arg = r.choice(["varlibqubes", "linux-kernel", "p2", "nosuch", ""])
        payload = r.choice([b"0", b"1", b"3", b"-1", b"True", b"False", b"x", b""]) if m.startswith("admin.pool.Set.") else b""
        return (m, "dom0", arg, payload, src)
    if fam == "device":
        cls = r.choice(["pci", "block", "usb", "mic", "nosuch"])
        m = r.choice(["Available", "Assigned", "Attached", "Assign", "Unassign", "Attach", "Detach", "Set.assignment"])
        arg = "" if m in ("Available", "Assigned", "Attached") else r.choice(
            ["sys-net+00_1f.6", "dom0+00_02.0", "dom0+sda", "nosuch+xvdi", "sys-net", "", "sys-net+", "work+xvdi"])
        payload = b""
        if m in ("Assign", "Attach"):
            payload = r.choice([b"mode='auto-attach'", b"mode='required'", b"mode='ask-to-attach' read-only='yes'", b"", b"x"])
        if m == "Set.assignment":
            payload = r.choice([b"required", b"auto-attach", b"ask-to-attach", b"x", b""])
        return (f"admin.vm.device.{cls}.{m}", vm, arg, payload, src)
    if fam == "extra":
        # calls the other families leave out: denied device classes, the
        # rarer classes and pools of new qubes, disposables, volume clones
        m = r.choice(["admin.vm.device.denied.Add", "admin.vm.device.denied.Remove", "admin.vm.device.denied.List",
                      "admin.vm.Create.RemoteVM", "admin.vm.Create.AdminVM", "admin.vm.CreateInPool.TemplateVM",
                      "admin.vm.CreateInPool.DispVM", "admin.vm.CreateInPool.StandaloneVM", "admin.vm.CreateDisposable",
                      "admin.vm.volume.CloneFrom", "admin.vm.volume.CloneTo", "admin.vm.volume.Clear"])
        if m.startswith("admin.vm.device.denied."):
            payload = b"" if m.endswith("List") else r.choice([b"b******", b"u03****", b"p0000**", b"m******", b"x", b"b", b"",
                                                                 b"b******u******", b"B******", b"b*****", b"b******\n"])
            return (m, vm, "", payload, src)
        if m in ("admin.vm.volume.CloneFrom", "admin.vm.volume.Clear"):
            return (m, vm, r.choice(["root", "private", "volatile", "kernel", "nosuch"]), b"", src)
        if m == "admin.vm.volume.CloneTo":
            return (m, vm, r.choice(["root", "private", "nosuch"]), r.choice([b"", b"x", b"0" * 32, b"a" * 64]), src)
        if m == "admin.vm.CreateDisposable":
            return (m, r.choice(["fedora-41-dvm", "work", "dom0", "fedora-41", "nosuch"]), r.choice(["", "", "preload-autostart"]),
                    b"", src)
        name = r.choice(["new1", "new2", "work", "a b", "", "disp12"])
        parts = [f"name={name}", f"label={r.choice(['red', 'blue', 'nosuch'])}"]
        if "InPool" in m:
            parts.append(r.choice(["pool=varlibqubes", "pool:root=varlibqubes", "pool:private=linux-kernel", "pool=nosuch"]))
        arg = r.choice(["", "fedora-41", "debian-12", "work", "fedora-41-dvm"])
        return (m, "dom0", arg, " ".join(parts).encode(), src)
    if fam == "src":
        # what a management qube sees through the policy (30-compare.policy)
        m = r.choice(["admin.vm.List"] * 3 + ["admin.vm.tag.Set", "admin.vm.Create.AppVM", "admin.vm.Create.DispVM", "admin.vm.Remove"])
        if m == "admin.vm.List":
            source = r.choice(["work", "personal", "sys-net", "vault", "untrusted", "fedora-41", "dom0", "nosuch"])
            return (m, r.choice(["dom0", "dom0", "work", "personal", "vault", "nosuch"]), r.choice(["", "", "x"]), b"", source)
        if m == "admin.vm.tag.Set":
            return (m, r.choice(VMS), r.choice(["foo", "created-by-dom0", "created-by-work"]), b"", "dom0")
        if m == "admin.vm.Remove":
            return (m, r.choice(["new1", "new2", "personal"]), "", b"", "dom0")
        return (m, "dom0", r.choice(["fedora-41", "fedora-41-dvm"]), r.choice([b"name=new1 label=red", b"name=new2 label=blue"]),
                r.choice(["dom0", "work", "vault"]))
    if fam == "raw":
        # request headers a client could get wrong
        method = r.choice([b"admin.vm.List", b"admin.vm.property.Get", b"admin.label.List", b"admin.vm.tag.List", b"admin.Events",
                           b"admin.vm.List+", b"", b"admin", b"admin.vm.List+x+y", b"admin.vm.property.Get+netvm"])
        parts = [method, r.choice([b"dom0", b"work", b"", b"nosuch", b"dom0 "]), r.choice([b"name", b"keyword", b"uuid", b"", b"x"]),
                 r.choice([b"dom0", b"work", b"adminvm", b"", b"uuid:8e9f2dc1-e8a0-4b1a-8363-e2723c8a8a56", b"work\0"])]
        if r.random() < 0.2:
            del parts[r.randrange(len(parts))]
        if r.random() < 0.2:
            parts.insert(r.randrange(len(parts) + 1), r.choice([b"extra", b""]))
        head = r.choice([b" ", b"  ", b"\t"]).join(parts) if r.random() < 0.2 else b" ".join(parts)
        tail = r.choice([b"\0", b"\0", b"\0", b"", b"\0\0", b"\0x", b"\n\0"])
        return ("RAW", "", "", head + tail, "")
    raise SystemExit(f"compare.py: no family {fam!r}")


def internal(ours):
    """Ours failed in its own code: never an answer, even where Qubes drops the call."""
    return b"An internal error occurred" in ours


def environmental(m, d, real):
    """Answers that depend on the oracle's environment, not on Qubes."""
    if m == "admin.vm.notes.Set":  # libqubes-pure is not installed
        return True
    if m == "admin.vm.CurrentState" and d in ("dom0", "uuid:00000000-0000-0000-0000-000000000000"):  # the test driver's dom0
        return True
    if m == "admin.vm.firewall.Set" and b"No such file or directory" in real:  # the fixture has no directory for most qubes
        return True
    return False


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--calls", type=int, default=500)
    ap.add_argument("--history", action="store_true", help="print the writes that led to each difference")
    ap.add_argument("--stop", action="store_true", help="stop at the first difference and leave both daemons running")
    ap.add_argument("families", nargs="*")
    a = ap.parse_args()
    fams = a.families or ["vmprop", "gprop", "feature", "tag", "label", "misc"]
    r = random.Random(a.seed)
    real = Daemon(f"/tmp/compare-real-{a.seed}", True).start()
    ours = Daemon(f"/tmp/compare-ours-{a.seed}", False).start()
    uuids = oracle_common.fixture_uuids(FIXTURE)
    norm_real = oracle_common.Normaliser(real.d + "/base", uuids)
    norm_ours = oracle_common.Normaliser(ours.d + "/base", uuids)
    diffs = collections.OrderedDict()
    count, history = 0, []
    try:
        for _ in range(a.calls):
            m, d, arg, p, s = gen(r, r.choice(fams))
            ra = DISPID_RE.sub(b"<dispid>", norm_real(m, real.call(m, d, arg, p, s)))
            ob = DISPID_RE.sub(b"<dispid>", norm_ours(m, ours.call(m, d, arg, p, s)))
            if arg == "dispid":  # random on both sides; GetAll's line is DISPID_RE's
                ra, ob = (re.sub(rb"int \d+$", b"int <dispid>", x) for x in (ra, ob))
            history.append((m, d, arg, p, s, ra[:100]))
            if ra == ob or environmental(m, d, ra) or (ra == b"" and ob.startswith(b"2\0") and not internal(ob)):
                continue
            count += 1
            diffs.setdefault((m, ra[:60]), (m, d, arg, p, s, ra, ob, history))
            if a.stop:
                print(f"stopped: the real daemon's socket is {real.sock}, ours {ours.sock}")
                real.proc = ours.proc = None
                break
            real.start()
            ours.start()
            history = []
    finally:
        real.stop()
        ours.stop()
    reads = ("Get", "GetAll", "GetDefault", "List", "Help", "Info", "Index", "ListSnapshots", "Assigned", "Available", "Attached")
    for m, d, arg, p, s, ra, ob, h in diffs.values():
        print(f"== {m}+{arg} {s} -> {d} payload={p!r}\n   real: {ra[:300]!r}\n   ours: {ob[:300]!r}")
        if a.history:
            for x in h[:-1]:
                if x[0].rsplit(".", 1)[-1] not in reads and not x[0].startswith("admin.vm.feature.Check"):
                    print("     after", x)
    print(f"{a.calls} calls, {count} differ, {len(diffs)} distinct")


if __name__ == "__main__":
    main()
