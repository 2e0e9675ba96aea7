#!/usr/bin/python3
"""The policy admin API (policy.List, .Get, .Replace, .Remove, .GetFiles and
the policy.include.* calls) driven through the real qrexec service program
(qrexec.tools.qubes_policy_admin, from QREXEC_SRC) and through ours
(bin/qubes-policy-admin), each on its own copy of a small policy directory:
random call sequences, with tokens that are current, stale, new, any or
malformed, and bodies made of valid rules, syntax errors, includes (missing,
cyclic, of the wrong kind), non-UTF-8 bytes and CRLF. After each call the
exit code, standard output, standard error and the whole directory (names,
contents, modes) are compared.

  admin-fuzz.py --seed N [N ...] [--calls N]

Not differences (counted, not printed one by one): where the real program
fails with an internal error (exit 2, "Internal error. See ... for details":
a UnicodeDecodeError, a RecursionError on an include cycle, a policy that
no longer loads) and ours answers exit 1 with a PolicyAdmin*Exception that
says why, leaving the directory as the real one left it.
Exit status 1 if anything else differs.
"""
import argparse
import hashlib
import os
import random
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
INITIAL = {
    "10-base.policy": "base.Svc * @anyvm @anyvm deny\n!include include/shared\n",
    "30-user.policy": "user.Svc +arg work @default allow target=dom0\n!include-service user.Inc * include/svcfile\n",
    "50-x.policy": "x.Y * @tag:foo @anyvm ask default_target=vault\n",
    "include/shared": "shared.Svc * @anyvm @anyvm deny\n",
    "include/svcfile": "work @default allow target=dom0\n",
    "include/unused": "u.Svc * @anyvm @anyvm deny\n",
}
NAMES = ["10-base", "30-user", "50-x", "60-new", "70-other", "shared", "svcfile", "unused", "newinc", "a.b", "a/b", "..", "",
         "x y", "\u00e9", "a+b", "-x", "_", "a" * 200, "x\n", "include", "!10-base", "10-base.policy"]
SERVICES = ["base.Svc", "user.Svc", "user.Inc", "x.Y", "shared.Svc", "u.Svc", "nosuch", "", "a+b", "a b", "*", "qubes.Filecopy"]
LINES = ["a.B * @anyvm @anyvm deny", "a.B * @anyvm @anyvm allow", "a.B +x work vault allow target=dom0",
         "a.B * @anyvm @dispvm:work allow", "a.B * @anyvm @anyvm ask default_target=nosuch", "a.B * @anyvm @anyvm",
         "a.B * nosuch-but-valid @anyvm deny", "a.B * @anyvm @anyvm deny notify=yes", "a.B * @anyvm @anyvm deny bogus=1",
         "!include include/shared", "!include include/missing", "!include include/unused", "!include-dir include",
         "!include-dir /etc", "!include-service a.B * include/svcfile", "!include-service a.B * include/shared",
         "!include include/../10-base.policy", "!compat-4.0", "# comment", "", "   ",
         "a.B * @anyvm @anyvm allow user=root", "a.B\t*\t@anyvm\t@anyvm\tdeny", "work @default allow",
         "@anyvm @anyvm deny", "a.B * @anyvm @anyvm allow target=@adminvm", "a.B * @anyvm @anyvm allow autostart=no",
         "*.B * @anyvm @anyvm deny", "a.B * @anyvm @default allow target=\u00e9"]


def token_of(path):
    if not os.path.isfile(path):
        return b"sha256:00"
    with open(path, "rb") as f:
        return b"sha256:" + hashlib.sha256(f.read()).hexdigest().encode()


def policy_body(r):
    text = "\n".join(r.choice(LINES) for _ in range(r.randrange(0, 5))) + ("\n" if r.random() < 0.85 else "")
    body = text.encode()
    if r.random() < 0.04:
        body += b"\xff\xfe"
    if r.random() < 0.03:
        body = body.replace(b"\n", b"\r\n")
    return body


def make_call(r, policy_dir):
    """(service, argument, payload), tokens taken from the real side's files."""
    m = r.choice(["List", "Get", "Replace", "Replace", "Replace", "Remove", "Remove", "include.List", "include.Get",
                  "include.Replace", "include.Replace", "include.Remove", "GetFiles", "Nosuch"])
    if m in ("List", "include.List"):
        return f"policy.{m}", "" if r.random() < 0.9 else "x", b"" if r.random() < 0.95 else b"x"
    if m == "GetFiles":
        return "policy.GetFiles", r.choice(SERVICES), b""
    arg = r.choice(NAMES)
    if m in ("Get", "include.Get", "Nosuch"):
        return f"policy.{m}", arg, b"" if r.random() < 0.95 else b"x"
    path = os.path.join(policy_dir, "include", arg) if m.startswith("include.") else os.path.join(policy_dir, arg + ".policy")
    token = r.choice([b"new", b"any", b"any", token_of(path), token_of(path), b"sha256:00", b"sha1:x", b"", b"ANY"])
    if m.endswith("Remove"):
        return f"policy.{m}", arg, token + (b"\n" if r.random() < 0.2 else b"")
    if r.random() < 0.05:
        return f"policy.{m}", arg, token  # no line for the token: a protocol error
    return f"policy.{m}", arg, token + b"\n" + policy_body(r)


def run(cmd, policy_dir, service, arg, payload):
    env = dict(os.environ, QREXEC_SERVICE_FULL_NAME=service + ("+" + arg if arg else ""), QREXEC_REMOTE_DOMAIN="mgmt",
               QREXEC_POLICY_DIR=policy_dir, QREXEC_POLICY_ADMIN_LOG=os.path.join(policy_dir, "..", "admin.log"))
    try:
        p = subprocess.run(cmd, input=payload, env=env, capture_output=True, timeout=60)
    except ValueError as e:  # a NUL in the service name cannot go into the environment
        return ("not run", str(e))
    d = policy_dir.encode()
    return p.returncode, p.stdout.replace(d, b"<DIR>"), p.stderr.replace(d, b"<DIR>")


def snapshot(policy_dir):
    out = {}
    for base, _dirs, files in os.walk(policy_dir):
        for name in files:
            p = os.path.join(base, name)
            with open(p, "rb") as f:
                out[os.path.relpath(p, policy_dir)] = (f.read(), oct(os.stat(p).st_mode & 0o777))
    return out


def fresh(root):
    shutil.rmtree(root, ignore_errors=True)
    policy_dir = os.path.join(root, "policy.d")
    os.makedirs(os.path.join(policy_dir, "include"))
    for name, text in INITIAL.items():
        with open(os.path.join(policy_dir, name), "w") as f:
            f.write(text)
    return policy_dir


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, nargs="+", default=[1])
    ap.add_argument("--calls", type=int, default=300)
    a = ap.parse_args()
    src = os.environ.get("QREXEC_SRC")
    if not src or not os.path.isdir(os.path.join(src, "qrexec")):
        sys.exit("admin-fuzz.py: set QREXEC_SRC to a qubes-core-qrexec checkout (README.md)")
    real_cmd = [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                "from qrexec.tools.qubes_policy_admin import main; main()", src]
    ours_cmd = ["node", os.path.join(ROOT, "bin", "qubes-policy-admin")]
    calls = differ = explained = 0
    for seed in a.seed:
        r = random.Random(seed)
        real_dir, ours_dir = fresh(f"/tmp/policy-admin-real-{seed}"), fresh(f"/tmp/policy-admin-ours-{seed}")
        history = []
        for _ in range(a.calls):
            service, arg, payload = make_call(r, real_dir)
            real, ours = run(real_cmd, real_dir, service, arg, payload), run(ours_cmd, ours_dir, service, arg, payload)
            calls += 1
            history.append((service, arg, payload[:100]))
            same_tree = snapshot(real_dir) == snapshot(ours_dir)
            if real == ours and same_tree:
                continue
            if (same_tree and real[0] == 2 and b"Internal error" in real[2] and ours[0] == 1
                    and ours[2].startswith(b"PolicyAdmin")):
                explained += 1
                continue
            differ += 1
            print(f"== seed {seed}: {service}+{arg!r} payload={payload[:200]!r}\n   real: {real!r}\n   ours: {ours!r}")
            if not same_tree:
                print("   and the directories differ")
            for h in history[-6:-1]:
                print("     after", h)
            # both start again from the same files
            real_dir, ours_dir = fresh(f"/tmp/policy-admin-real-{seed}"), fresh(f"/tmp/policy-admin-ours-{seed}")
            history = []
        print(f"seed {seed} done", flush=True)
    print(f"{calls} calls, {differ} differ, {explained} where the real program failed internally and ours said why")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
