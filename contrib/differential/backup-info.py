#!/usr/bin/python3
"""admin.backup.Info (and Execute's refusals before it starts) on the real
qubesd and on ours, for backup profiles of every shape: valid ones, each key
missing or of the wrong type, YAML that is not a mapping or not YAML at all.

  backup-info.py [--show-same]

Both daemons start from the conformance fixture with the same profile files
in their backup profile directory. Not differences: the real daemon
dropping the connection (an unhandled Python error) where ours answers with
an EXCEPTION (the conformance replay's --lenient).
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from compare import FIXTURE, Daemon, oracle_common  # noqa: E402

BASE = "destination_vm: dom0\ndestination_path: /var/tmp\n"
PROFILES = {
    "plain": BASE + "include:\n  - work\n  - vault\npassphrase_text: x\n",
    "include-null": BASE + "include: null\npassphrase_text: x\n",
    "include-missing": BASE + "passphrase_text: x\n",
    "include-empty": BASE + "include: []\npassphrase_text: x\n",
    "include-string": BASE + "include: work\npassphrase_text: x\n",
    "include-int": BASE + "include: [1]\npassphrase_text: x\n",
    "include-tag": BASE + "include:\n  - $tag:created-by-dom0\npassphrase_text: x\n",
    "include-type": BASE + "include:\n  - '@type:TemplateVM'\npassphrase_text: x\n",
    "include-dollar-type": BASE + "include:\n  - $type:AppVM\npassphrase_text: x\n",
    "include-nosuch": BASE + "include:\n  - nosuch\npassphrase_text: x\n",
    "include-dom0": BASE + "include:\n  - dom0\npassphrase_text: x\n",
    "exclude": BASE + "include: null\nexclude:\n  - work\npassphrase_text: x\n",
    "exclude-null": BASE + "include: null\nexclude: null\npassphrase_text: x\n",
    "exclude-string": BASE + "include: null\nexclude: work\npassphrase_text: x\n",
    "exclude-all": BASE + "include:\n  - work\nexclude:\n  - work\npassphrase_text: x\n",
    "no-dest-vm": "destination_path: /var/tmp\ninclude: null\npassphrase_text: x\n",
    "no-dest-path": "destination_vm: dom0\ninclude: null\npassphrase_text: x\n",
    "dest-nosuch": "destination_vm: nosuch\ndestination_path: /var/tmp\ninclude: null\npassphrase_text: x\n",
    "dest-work": "destination_vm: work\ndestination_path: /home/user\ninclude: null\npassphrase_text: x\n",
    "dest-int": "destination_vm: 0\ndestination_path: /var/tmp\ninclude: null\npassphrase_text: x\n",
    "dest-qid": "destination_vm: 2\ndestination_path: /var/tmp\ninclude: null\npassphrase_text: x\n",
    "dest-null": "destination_vm: null\ndestination_path: /var/tmp\ninclude: null\npassphrase_text: x\n",
    "path-int": "destination_vm: dom0\ndestination_path: 5\ninclude: null\npassphrase_text: x\n",
    "no-passphrase": BASE + "include: null\n",
    "passphrase-vm": BASE + "include: null\npassphrase_vm: vault\n",
    "passphrase-vm-nosuch": BASE + "include: null\npassphrase_vm: nosuch\n",
    "both-passphrases": BASE + "include: null\npassphrase_text: x\npassphrase_vm: vault\n",
    "compression-false": BASE + "include: null\ncompression: false\npassphrase_text: x\n",
    "compression-gzip": BASE + "include: null\ncompression: gzip\npassphrase_text: x\n",
    "compression-bad": BASE + "include: null\ncompression: rm -rf\npassphrase_text: x\n",
    "compression-int": BASE + "include: null\ncompression: 9\npassphrase_text: x\n",
    "unknown-key": BASE + "include: null\npassphrase_text: x\nfoo: bar\n",
    "list": "- a\n- b\n",
    "scalar": "hello\n",
    "empty": "",
    "comment-only": "# nothing\n",
    "bad-yaml": "destination_vm: [\n",
    "tabs": "destination_vm:\tdom0\n\tdestination_path: /var/tmp\n",
    "duplicate-key": BASE + "include: null\ninclude: null\npassphrase_text: x\n",
    "anchor": "d: &d dom0\ndestination_vm: *d\ndestination_path: /var/tmp\ninclude: null\npassphrase_text: x\n",
    "bad-utf8": None,  # bytes that are not UTF-8
    "yes-no": BASE + "include: null\ncompression: yes\npassphrase_text: x\n",
}
CALLS = [("admin.backup.Info", "{}"), ("admin.backup.Info", "nosuch"), ("admin.backup.Info", "a/b"), ("admin.backup.Info", ""),
         ("admin.backup.Info", ".hidden"), ("admin.backup.Info", "plain.conf"), ("admin.backup.Cancel", "plain"),
         ("admin.backup.Cancel", "nosuch"), ("admin.backup.Cancel", "a/b")]
# Execute only where it fails before writing anything
EXECUTE = ["no-passphrase", "passphrase-vm-nosuch", "dest-nosuch", "dest-null", "no-dest-vm", "no-dest-path", "nosuch", "a/b"]


def write_profiles(d):
    for name, text in PROFILES.items():
        with open(os.path.join(d, "backup", name + ".conf"), "wb") as f:
            f.write(b"destination_vm: dom0\xff\xfe\n" if text is None else text.encode())
    with open(os.path.join(d, "backup", ".hidden.conf"), "w") as f:
        f.write(PROFILES["plain"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--show-same", action="store_true")
    a = ap.parse_args()
    real = Daemon("/tmp/backup-info-real", True).start()
    ours = Daemon("/tmp/backup-info-ours", False).start()
    for dmn in (real, ours):
        write_profiles(dmn.d)
    uuids = oracle_common.fixture_uuids(FIXTURE)
    norm_real = oracle_common.Normaliser(real.d + "/base", uuids)
    norm_ours = oracle_common.Normaliser(ours.d + "/base", uuids)
    diffs = 0
    try:
        calls = [(m, arg.format(p)) if "{}" in arg else (m, arg) for m, arg in CALLS for p in (PROFILES if "{}" in arg else [None])]
        calls += [("admin.backup.Execute", p) for p in EXECUTE]
        for m, arg in calls:
            r = norm_real(m, real.call(m, "dom0", arg, b"", "dom0"))
            o = norm_ours(m, ours.call(m, "dom0", arg, b"", "dom0"))
            same = r == o or (r == b"" and o.startswith(b"2\0"))
            if not same or a.show_same:
                at = next((i for i in range(min(len(r), len(o))) if r[i] != o[i]), min(len(r), len(o)))
                at = max(0, at - 160)  # the replies from a little before they part
                print(f"{'same' if same else 'DIFF'} {m}+{arg} (from byte {at})\n  real: {r[at:at + 600]!r}\n  ours: {o[at:at + 600]!r}")
            diffs += not same
    finally:
        real.stop()
        ours.stop()
    print(f"{diffs} differences")
    sys.exit(1 if diffs else 0)


if __name__ == "__main__":
    main()
