#!/usr/bin/python3
"""Random policy directories (gen.py) evaluated by the real qrexec policy
engine (evaluate.py) and by ours (node dist/policy/cli.js eval), compared as
the conformance kit's `compare.py --crash-as-deny` compares; prints each
distinct kind of difference and saves its smallest reproduction.

  fuzz.py --seed N [N ...] --policies N [--out DIR]

Needs QREXEC_SRC (README.md). Exit status 1 if a kind is not among the
known non-differences.
"""
import argparse
import hashlib
import importlib.util
import json
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
# no __pycache__ in the repository (nor in the kit)
sys.dont_write_bytecode = True
sys.path.insert(0, HERE)
import gen  # noqa: E402  (finds the kit: gen.KIT)

sys.path.insert(0, gen.KIT)
import qrexec_oracle as qo  # noqa: E402

# the kit's compare.py by path: contrib/differential has a compare.py too
_spec = importlib.util.spec_from_file_location(
    "policy_kit_compare", os.path.join(gen.KIT, "compare.py"))
kit_compare = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(kit_compare)

ORACLE = [sys.executable, os.path.join(HERE, "evaluate.py")]
OURS_JS = os.path.join(gen.REPO, "dist", "policy", "cli.js")
OURS = ["node", OURS_JS, "eval"]
# log text, as the kit's compare.py leaves it out by default
IGNORED = {"warnings", "cat"}
MARKER = ".policy-compare"


def write_case(root, case):
    """Make case["files"] under root; returns the directories to pass."""
    for rel, val in sorted(case["files"].items()):
        p = os.path.join(root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        if val == ("dir",):
            os.makedirs(p, exist_ok=True)
        elif isinstance(val, tuple):
            # a link may stand where a directory was implied by an earlier path
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p)
            elif os.path.lexists(p):
                os.unlink(p)
            os.symlink(val[1], p)
        elif not os.path.isdir(p):
            with open(p, "wb") as f:
                f.write(val)
    os.makedirs(os.path.join(root, "policy.d"), exist_ok=True)
    runtime = os.path.join(root, "runtime") if case.get("runtime") else None
    if runtime and not case.get("missing_runtime"):
        os.makedirs(runtime, exist_ok=True)
    return {"policy_dir": os.path.join(root, "policy.d"),
            "runtime_dir": runtime,
            "legacy_dir": os.path.join(root, "legacy")}


def command(cmd, dirs):
    args = list(cmd) + ["--policy-dir", dirs["policy_dir"], "--system-info", gen.SYSINFO]
    if dirs["runtime_dir"]:
        args += ["--runtime-dir", dirs["runtime_dir"]]
    return args + ["--legacy-dir", dirs["legacy_dir"]]


def run_one(cmd, dirs, queries, timeout=60):
    """Answers (paths rewritten to Qubes') and a problem or None."""
    inp = "".join(json.dumps(q, ensure_ascii=False) + "\n" for q in queries)
    try:
        p = subprocess.run(command(cmd, dirs), input=inp.encode(), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return [], "timeout"
    canon = qo.Canon(dirs["policy_dir"], dirs["runtime_dir"], dirs["legacy_dir"])
    out = []
    for line in p.stdout.decode("utf-8", "replace").split("\n"):
        if line.strip():
            try:
                out.append(canon.obj(json.loads(line)))
            except ValueError:
                out.append({"<unparsable>": line})
    if p.returncode != 0 or len(out) != len(queries):
        return out, "exit {}, {} answers to {} queries: {}".format(
            p.returncode, len(out), len(queries),
            p.stderr.decode("utf-8", "replace").strip()[-300:])
    return out, None


def norm_msg(s):
    """A message with what varies from case to case (paths, quoted values,
    lists, numbers) blanked, so one cause gives one kind."""
    if not isinstance(s, str):
        return str(s)
    s = re.sub(r"/(etc|run)/qubes[^\s:']*(:\d+|:None)?", "PATH", s)
    s = re.sub(r"'(?:[^'\\]|\\.)*'", "Q", s)
    s = re.sub(r'"(?:[^"\\]|\\.)*"', "Q", s)
    s = re.sub(r"\[[^\]]*\]", "[L]", s)
    s = re.sub(r"\([^)]*\)", "(T)", s)
    s = re.sub(r"uuid:[0-9a-f-]+", "UUID", s)
    s = re.sub(r"\d+", "N", s)
    return s[:90]


def rstate(r):
    if r is None:
        return "missing"
    return "/".join([r.get("result", "?")] + [r[k] for k in ("stage", "error_type") if k in r])


def msg_of(r):
    for k in ("error", "reason", "response_error"):
        if r and r.get(k):
            return r[k]
    return ""


FIELD_ORDER = ["<missing>", "id", "result", "stage", "error_type", "error",
               "rule", "reason", "target", "targets_for_ask", "default_target",
               "user", "autostart", "notify", "response", "response_error",
               "eval_simple"]


def kind_of(fields, exp, got):
    if (exp or {}).get("stage") == "load" or (got or {}).get("stage") == "load":
        # a policy that does not load answers every query alike: one kind per
        # pair of load outcomes, whatever the query
        def load(r):
            if (r or {}).get("stage") != "load":
                return "loaded"
            return r.get("error_type", "") + ": " + norm_msg(r.get("error"))
        return "LOAD | real: {} | ours: {}".format(load(exp), load(got))
    fs = sorted(fields, key=lambda f: FIELD_ORDER.index(f) if f in FIELD_ORDER else 99)
    key = "{} | {} -> {} | {} || {}".format(
        ",".join(fs), rstate(exp), rstate(got), norm_msg(msg_of(exp)), norm_msg(msg_of(got)))
    if fs in (["response"], ["response", "response_error"]):
        key += " | response {} vs {}".format(norm_msg(exp.get("response", ""))[:40],
                                             norm_msg((got or {}).get("response", ""))[:40])
    return key


def py311_repr(s):
    """s as Python 3.11's repr() shows it inside a message: characters its
    Unicode 14 tables do not know are escaped. Run by Debian's python3 (3.11)."""
    return "".join(repr(c)[1:-1] if unicodedata.category(c) == "Cn" else c for c in s)


def not_a_difference(case, fields, exp, got):
    """Which of README.md's "Not differences" this is, or None. (The real
    engine crashing where ours denies is accepted by the comparison itself.)"""
    if case.get("missing_runtime") and exp.get("stage") == "load" and \
            qo.CANON_RUNTIME in exp.get("error", ""):
        return "missing --runtime-dir"
    if got and fields and all(
            isinstance(exp.get(k), str) and isinstance(got.get(k), str) and
            py311_repr(got[k]) == exp[k] for k in fields):
        return "Unicode after 14 escaped by Python 3.11"
    return None


def classify(case, fields, exp, got):
    """(kind, not-a-difference label or None) of one differing answer."""
    label = not_a_difference(case, fields, exp, got)
    key = kind_of(fields, exp, got)
    return ("not a difference ({}) | {}".format(label, key) if label else key), label


def slug(key):
    s = re.sub(r"[^A-Za-z0-9]+", "_", key)[:70].strip("_")
    return s + "-" + hashlib.sha1(key.encode()).hexdigest()[:8]


def case_size(case):
    return sum(len(v) + 20 if isinstance(v, bytes) else 20 for v in case["files"].values())


def describe(case, query, dirs):
    """The case as text, every line escaped, and how to rerun it."""
    out = []
    for rel, v in sorted(case["files"].items()):
        if isinstance(v, tuple):
            out.append("--- {} {}".format(rel, v))
            continue
        out.append("--- {} ({} bytes)".format(rel, len(v)))
        for i, ln in enumerate(re.split(r"(?<=\n)", v.decode("utf-8", "backslashreplace")), 1):
            if ln:
                out.append("{:3}| {}".format(i, ascii(ln)[1:-1]))
    if case.get("missing_runtime"):
        out.append("--- runtime/ is passed but does not exist")
    out.append("--- query: " + json.dumps(query, ensure_ascii=False))
    q = shlex.quote(json.dumps(query, ensure_ascii=False))
    for cmd in (ORACLE, OURS):
        out.append("$ echo {} | {}".format(q, " ".join(shlex.quote(a) for a in command(cmd, dirs))))
    return "\n".join(out) + "\n"


def save_repro(out, key, case, query, exp, got, fields, origin):
    """Keep in out/<kind>/ the smallest reproduction of the kind, and one
    example (ex-*/) per set of generator mutations, up to 8: causes that
    share a kind tend to differ there."""
    d = os.path.join(out, slug(key))
    os.makedirs(d, exist_ok=True)
    info_p = os.path.join(d, "info.json")
    info = {"key": key, "count": 0, "size": None, "signatures": {}}
    if os.path.exists(info_p):
        with open(info_p) as f:
            info = json.load(f)
    info["count"] += 1
    sig = ",".join(sorted(set(case.get("mutations") or []))) or "none"
    if sig not in info["signatures"] and len(info["signatures"]) < 8:
        ed = os.path.join(d, "ex-" + hashlib.sha1(sig.encode()).hexdigest()[:6])
        dirs = write_case(os.path.join(ed, "case"), case)
        with open(os.path.join(ed, "repro.txt"), "w") as f:
            f.write("mutations: {}\norigin: {}\n".format(sig, origin))
            f.write(describe(case, query, dirs))
            f.write("real: " + json.dumps(exp, ensure_ascii=False) + "\n")
            f.write("ours: " + json.dumps(got, ensure_ascii=False) + "\n")
    info["signatures"][sig] = info["signatures"].get(sig, 0) + 1
    size = case_size(case)
    if info["size"] is None or size < info["size"]:
        info.update(size=size, fields=fields, origin=origin)
        shutil.rmtree(os.path.join(d, "case"), ignore_errors=True)
        dirs = write_case(os.path.join(d, "case"), case)
        for name, val in (("query.json", query), ("real.json", exp), ("ours.json", got)):
            with open(os.path.join(d, name), "w") as f:
                json.dump(val, f, indent=1, ensure_ascii=False)
        with open(os.path.join(d, "case.json"), "w") as f:
            json.dump({"runtime": bool(case.get("runtime")),
                       "missing_runtime": bool(case.get("missing_runtime"))}, f)
        with open(os.path.join(d, "repro.txt"), "w") as f:
            f.write("kind: {}\norigin: {}\n".format(key, origin))
            f.write(describe(case, query, dirs))
            f.write("--- differing: {}\n".format(", ".join(fields)))
            for k in fields:
                for who, r in (("real", exp), ("ours", got)):
                    f.write("  {} {}: {}\n".format(who, k, json.dumps(
                        (r or {}).get(k, "<absent>"), ensure_ascii=False)))
    with open(info_p, "w") as f:
        json.dump(info, f, indent=1, ensure_ascii=False)
    return d


def compare_case(case, workdir):
    """Run both on case in workdir. Returns ([(query, real, ours, fields)],
    real-engine crashes, problems)."""
    shutil.rmtree(workdir, ignore_errors=True)
    dirs = write_case(workdir, case)
    queries = case["queries"]
    exp, e1 = run_one(ORACLE, dirs, queries)
    got, e2 = run_one(OURS, dirs, queries)
    problems = ["real: " + e1] if e1 else []
    problems += ["ours: " + e2] if e2 else []
    diffs = []
    crashes = 0
    for q, e, g in zip(queries, exp, got + [None] * len(queries)):
        if e.get("error_type") == "internal":
            crashes += 1
        bad = kit_compare.diff_record(e, g, IGNORED, crash_as_deny=True)
        if bad:
            diffs.append((q, e, g, bad))
    return diffs, crashes, problems


def prepare_out(out):
    """Start out afresh; refuse a directory this tool did not make."""
    if os.path.isdir(out) and os.listdir(out):
        if not os.path.exists(os.path.join(out, MARKER)):
            sys.exit("{} is not empty and not an output of fuzz.py; give another --out".format(out))
        shutil.rmtree(out)
    os.makedirs(out, exist_ok=True)
    open(os.path.join(out, MARKER), "w").close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, nargs="+", required=True)
    ap.add_argument("--policies", type=int, default=100, help="per seed (default 100)")
    ap.add_argument("--out", help="reproductions (default /tmp/policy-compare-SEED)")
    a = ap.parse_args()
    qo.import_qrexec()  # dies with how to set QREXEC_SRC
    if not os.path.exists(OURS_JS):
        sys.exit("{} is missing: npm run build".format(OURS_JS))
    out = a.out or "/tmp/policy-compare-" + "-".join(map(str, a.seed))
    prepare_out(out)
    work = tempfile.mkdtemp(prefix="policy-compare.")
    kinds = {}  # key -> [count, reproduction dir, not-a-difference label]
    total_q = total_diff = 0
    try:
        for seed in a.seed:
            t0 = time.time()
            nq = ndiff = ncrash = nprob = 0
            for i in range(a.policies):
                origin = "{}:{}".format(seed, i)
                # a string seed: each case can be made again on its own
                case = gen.gen_case(random.Random(origin))
                diffs, crashes, problems = compare_case(case, os.path.join(work, "case"))
                nq += len(case["queries"])
                ncrash += crashes
                nprob += len(problems)
                for p in problems:
                    print("[{}] {}".format(origin, p), file=sys.stderr)
                for q, e, g, bad in diffs:
                    ndiff += 1
                    key, label = classify(case, bad, e, g)
                    one = dict(case, queries=[q])
                    d = save_repro(out, key, one, q, e, g, bad, origin)
                    kinds.setdefault(key, [0, d, label])[0] += 1
            print("seed {}: {} policies, {} queries, {} differ, {} real-engine crashes "
                  "(accepted where ours denies), {} runs failed ({:.0f}s)".format(
                      seed, a.policies, nq, ndiff, ncrash, nprob, time.time() - t0), flush=True)
            total_q += nq
            total_diff += ndiff
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for key, (n, d, _) in sorted(kinds.items(), key=lambda kv: -kv[1][0]):
        print("{:6} {}\n       {}".format(n, key, d))
    unknown = sum(1 for v in kinds.values() if not v[2])
    print("reproductions in " + out)
    print("{} queries, {} differ, {} kinds ({} of them not differences, README.md)".format(
        total_q, total_diff, len(kinds), len(kinds) - unknown))
    sys.exit(1 if unknown else 0)


if __name__ == "__main__":
    main()
