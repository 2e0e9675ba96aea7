#!/usr/bin/python3
"""The real qrexec policy engine behind the command line of ours
(`node dist/policy/cli.js eval`):

  evaluate.py --policy-dir DIR --system-info FILE [--runtime-dir R] [--legacy-dir L]

JSON queries on stdin, one JSON answer per line, paths rewritten to Qubes'
(/etc/qubes/policy.d...) as the conformance kit's compare.py does. Needs
QREXEC_SRC (a qubes-core-qrexec checkout).
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# no __pycache__ in the repository, the kit or the Qubes checkout
sys.dont_write_bytecode = True
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
KIT = os.path.abspath(os.environ.get("POLICY_KIT") or
                      os.path.join(REPO, "..", "shared", "conformance", "policy"))
sys.path.insert(0, KIT)
import qrexec_oracle as qo  # noqa: E402

# re-executes with a UTF-8 locale and a fixed hash seed, as the kit records
qo.ensure_env()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--policy-dir", required=True)
    ap.add_argument("--system-info", required=True)
    ap.add_argument("--runtime-dir")
    ap.add_argument("--legacy-dir")
    args = ap.parse_args()
    runtime = args.runtime_dir or None
    legacy = args.legacy_dir or None

    qx = qo.import_qrexec()
    col = qo.install_warning_collector()
    system_info = qo.load_system_info(args.system_info)
    canon = qo.Canon(args.policy_dir, runtime, legacy)
    policy, load_error = qo.load_policy(qx, args.policy_dir, runtime, legacy)
    for line in sys.stdin:
        if not line.strip():
            continue
        query = json.loads(line)
        del col.messages[:]
        try:
            res = qo.evaluate_query(qx, policy, load_error, system_info, query)
        except Exception as err:  # pylint: disable=broad-except
            # evaluate_query catches what the engine raises when it decides;
            # anything else is the engine crashing, which qrexec-policy-daemon
            # answers with nothing (a denial)
            res = {"id": query.get("id"), "result": "error",
                   "stage": "evaluate", "error_type": "internal",
                   "error": "{}: {}".format(type(err).__name__, err),
                   "rule": None, "response": "result=deny",
                   "eval_simple": "result=deny"}
        res["warnings"] = list(col.messages)
        sys.stdout.write(json.dumps(canon.obj(res), ensure_ascii=False) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
