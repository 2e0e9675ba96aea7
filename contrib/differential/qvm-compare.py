#!/usr/bin/python3
"""The real Qubes client tools (qvm-*, qubes-prefs) run against the real
qubesd (the oracle, real-qubesd.py) and against ours, both started from the
conformance fixture; the same commands in the same order, and every command
whose exit code, standard output or standard error differs is printed.

  qvm-compare.py [COMMANDS_FILE ...]

A commands file has one command line per line (shell quoting), `#` comments,
and `RESET` to start both daemons afresh; `@DIR@` stands for the daemon's
own directory (a new pool's dir_path must not be shared by the two).
Default: the files in qvm/.
Needs QUBES_CORE_ADMIN_CLIENT (a qubes-core-admin-client checkout) besides
what compare.py needs (README.md).
"""
import glob
import os
import re
import shlex
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import compare  # noqa: E402

QVM = os.path.join(compare.ROOT, "..", "shared", "conformance", "tools", "qvm.py")
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# timestamps, a disposable's dispid and address, Python object addresses in
# messages, and a firewall rule's time left differ between any two runs
VARYING_RE = re.compile(r"\b1\d{9}\b|^(dispid\s+-\s+)\d+$|\b10\.138\.\d+\.\d+\b|(object at )0x[0-9a-f]+|(  )\+\d+s(?=  )", re.M)


def run(daemon, line):
    env = dict(os.environ, QUBESD_SOCKET=daemon.sock)
    try:
        args = [a.replace("@DIR@", daemon.d) for a in shlex.split(line)]
        p = subprocess.run([sys.executable, QVM] + args, env=env, capture_output=True, timeout=120,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return None, "<timed out>"
    text = (p.stdout + b"\n-- stderr --\n" + p.stderr).decode("utf8", "replace")
    text = text.replace(daemon.d + "/base", "<BASE>").replace(daemon.d, "@DIR@")
    text = VARYING_RE.sub(lambda m: (m.group(1) or m.group(2) or m.group(3) or "") + "<varies>", UUID_RE.sub("<uuid>", text))
    return p.returncode, text


def main():
    if not os.environ.get("QUBES_CORE_ADMIN_CLIENT"):
        sys.exit("qvm-compare.py: set QUBES_CORE_ADMIN_CLIENT to a qubes-core-admin-client checkout")
    files = sys.argv[1:] or sorted(glob.glob(os.path.join(HERE, "qvm", "*.txt")))
    real = compare.Daemon("/tmp/qvm-compare-real", True)
    ours = compare.Daemon("/tmp/qvm-compare-ours", False)
    total = differ = 0
    try:
        for f in files:
            real.start()
            ours.start()
            print(f"# {os.path.basename(f)}")
            for line in open(f):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                if line == "RESET":
                    real.start()
                    ours.start()
                    continue
                total += 1
                a, b = run(real, line), run(ours, line)
                if a == b:
                    print(f"same  {line}  (exit {a[0]})")
                    continue
                differ += 1
                print(f"DIFF  {line}\n  real, exit {a[0]}:\n{indent(a[1])}\n  ours, exit {b[0]}:\n{indent(b[1])}")
    finally:
        real.stop()
        ours.stop()
    print(f"{total} commands, {differ} differ")


def indent(text):
    return "\n".join("    " + x for x in text.rstrip("\n").split("\n")[:60])


if __name__ == "__main__":
    main()
