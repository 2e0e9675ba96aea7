#!/usr/bin/python3
"""Shrink reproductions saved by fuzz.py while the same kind of difference
persists: drops files, then lines, then the runtime directory and query
fields, until nothing more can go.

  minimize.py KIND_DIR [KIND_DIR ...]     (e.g. /tmp/policy-compare-1/*/)

Writes KIND_DIR/min/ (case/, query.json, real.json, ours.json, repro.txt).
"""
import json
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
# no __pycache__ in the repository (nor in the kit)
sys.dont_write_bytecode = True
sys.path.insert(0, HERE)
import fuzz  # noqa: E402


def read_tree(root):
    """A case's files as gen.py describes them, read back from disk."""
    files = {}
    # a link to a directory is listed in dirnames but not entered
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                files[rel] = ("symlink", os.readlink(p))
            elif os.path.isdir(p):
                files[rel] = ("dir",)
            else:
                with open(p, "rb") as f:
                    files[rel] = f.read()
    return files


def split_lines(b):
    """Lines with their terminators, as Python's text mode splits them."""
    out, start, i = [], 0, 0
    while i < len(b):
        if b[i:i + 1] in (b"\n", b"\r"):
            if b[i:i + 2] == b"\r\n":
                i += 1
            out.append(b[start:i + 1])
            start = i + 1
        i += 1
    if start < len(b):
        out.append(b[start:])
    return out


class Shrinker:
    def __init__(self, work):
        self.work = work
        self.checks = 0

    def kind(self, case):
        """(kind, real, ours, fields) of the case's one query, or Nones."""
        self.checks += 1
        diffs, _, _ = fuzz.compare_case(case, os.path.join(self.work, "case"))
        if not diffs:
            return None, None, None, None
        _, e, g, bad = diffs[0]
        return fuzz.classify(case, bad, e, g)[0], e, g, bad

    def minimise(self, kdir):
        with open(os.path.join(kdir, "info.json")) as f:
            target = json.load(f)["key"]
        with open(os.path.join(kdir, "case.json")) as f:
            case = json.load(f)
        with open(os.path.join(kdir, "query.json")) as f:
            case["queries"] = [json.load(f)]
        case["files"] = read_tree(os.path.join(kdir, "case"))
        if self.kind(case)[0] != target:
            print("  does not reproduce")
            return

        def ok(c):
            return self.kind(c)[0] == target

        changed = True
        while changed:
            changed = False
            # whole files and directories, deepest first
            for rel in sorted(case["files"], key=lambda r: -r.count("/")):
                if rel not in case["files"] or rel == "policy.d":
                    continue
                c2 = dict(case, files={k: v for k, v in case["files"].items()
                                       if k != rel and not k.startswith(rel + "/")})
                if ok(c2):
                    case, changed = c2, True
            # lines, in halving chunks
            for rel in sorted(case["files"]):
                v = case["files"].get(rel)
                if not isinstance(v, bytes):
                    continue
                lines = split_lines(v)
                n = max(1, len(lines) // 2)
                while n >= 1:
                    i = 0
                    while i < len(lines):
                        cand = lines[:i] + lines[i + n:]
                        c2 = dict(case, files=dict(case["files"], **{rel: b"".join(cand)}))
                        if ok(c2):
                            lines, case, changed = cand, c2, True
                        else:
                            i += n
                    n //= 2
            # the runtime directory, once empty
            if case.get("runtime") and not case.get("missing_runtime") and \
                    not any(k.startswith("runtime/") for k in case["files"]):
                c2 = dict(case, runtime=False,
                          files={k: v for k, v in case["files"].items() if k != "runtime"})
                if ok(c2):
                    case, changed = c2, True
            q = case["queries"][0]
            for field, val in (("requested_source", None), ("argument", "")):
                if field in q and q[field] != val:
                    q2 = {k: v for k, v in q.items() if k != field}
                    if val is not None:
                        q2[field] = val
                    c2 = dict(case, queries=[q2])
                    if ok(c2):
                        case, changed = c2, True
        _, e, g, bad = self.kind(case)
        out = os.path.join(kdir, "min")
        shutil.rmtree(out, ignore_errors=True)
        dirs = fuzz.write_case(os.path.join(out, "case"), case)
        q = case["queries"][0]
        for name, val in (("query.json", q), ("real.json", e), ("ours.json", g)):
            with open(os.path.join(out, name), "w") as f:
                json.dump(val, f, indent=1, ensure_ascii=False)
        with open(os.path.join(out, "repro.txt"), "w") as f:
            f.write("kind: " + target + "\n")
            f.write(fuzz.describe(case, q, dirs))
            f.write("--- differing: {}\n".format(", ".join(bad)))
            for k in bad:
                for who, r in (("real", e), ("ours", g)):
                    f.write("  {} {}: {}\n".format(who, k, json.dumps(
                        (r or {}).get(k, "<absent>"), ensure_ascii=False)))


def main():
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        sys.exit(__doc__.strip())
    fuzz.qo.import_qrexec()
    work = tempfile.mkdtemp(prefix="policy-minimize.")
    shrinker = Shrinker(work)
    try:
        for d in sys.argv[1:]:
            print("minimising", d, flush=True)
            c0 = shrinker.checks
            shrinker.minimise(d.rstrip("/"))
            print("  {} runs".format(shrinker.checks - c0), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
