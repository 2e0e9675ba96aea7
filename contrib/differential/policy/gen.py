"""Random policy directories and queries for fuzz.py.

gen_case(rng) returns a case, a dict:
  files:   {relpath: bytes | ("dir",) | ("symlink", target)}, relpath under
           policy.d/, runtime/ or legacy/ (parent directories are implied)
  runtime: pass --runtime-dir (runtime/)
  missing_runtime: runtime/ is passed but not made
  queries: [query dict], as the conformance kit's cases have them
  mutations: what the generator did on purpose (a bad line, a BOM...), to
           tell apart causes that end in the same kind of difference

Qubes names, tags and UUIDs come from the conformance kit's system_info.json.
"""

import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
KIT = os.path.abspath(os.environ.get("POLICY_KIT") or
                      os.path.join(REPO, "..", "shared", "conformance", "policy"))
SYSINFO = os.path.join(KIT, "corpus", "system_info.json")

try:
    with open(SYSINFO, encoding="utf-8") as _f:
        DOMAINS = json.load(_f)["domains"]
except OSError as _err:
    raise SystemExit("cannot read the conformance kit's system info ({}); "
                     "set POLICY_KIT to the kit's policy directory".format(_err))

NAMES = sorted(DOMAINS)
UUIDS = {n: d["uuid"] for n, d in DOMAINS.items()}
TYPES = sorted({d["type"] for d in DOMAINS.values()})
TAGS = sorted({t for d in DOMAINS.values() for t in d["tags"]})
DVM_TEMPLATES = [n for n, d in DOMAINS.items() if d["template_for_dispvms"]]
GHOSTS = ["ghost", "Work", "wörk", "work-", "DOM0", "sys_net", "x" * 40]
BOGUS_UUID = "12345678-1234-5678-1234-567812345678"

SERVICES = ["test.A", "test.B", "qubes.Filecopy", "my-Svc_1.x", "a", "T"]
ARGS = ["+", "+a", "+b", "+A", "+x.y-z_1", "++a", "+a+b"]

# whitespace for Python's str.split()/strip() (not line breaks for text mode)
ODD_WS = ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f", "\x85", "\xa0",
          "\u1680", "\u2000", "\u2003", "\u200a", "\u2028", "\u2029",
          "\u202f", "\u205f", "\u3000"]
# not whitespace for Python, but look like it / odd characters
NOT_WS = ["\u200b", "\ufeff", "\u180e", "\x00", "\x7f", "\xad", "\u0301",
          "\U0001F600", "\U000E0001", "\ue000", "\uff01", "\u00e9", "\u0394",
          "'", '"', "\\", "\x01", "\u061c", "\U0001d7d8", "\u2066", "\ud7ff",
          "$", ",", "=", "#", "!", "@", ":", "/", "*", "+"]
# assigned after Unicode 14, the tables of Python 3.11: its repr() escapes
# them in error messages
NEW_UNICODE = ["\U0001FAE8", "\u0CF3", "\U0002EBF0", "\U00011F00", "\U0001CC00",
               "\U00010D40", "\u0897", "\U0001E030", "\U0001F8B0", "\u1ACF"]
NOT_WS.append(NEW_UNICODE[0])


def sep(rng, odd):
    if odd and rng.random() < 0.3:
        return "".join(rng.choice(ODD_WS + [" ", "\t"])
                       for _ in range(rng.randint(1, 3)))
    return rng.choice([" ", "  ", "\t", "   ", " \t "])


def uuid_tok(rng, name=None):
    if name is None:
        name = rng.choice(NAMES)
    return "uuid:" + UUIDS[name]


def name_tok(rng):
    r = rng.random()
    if r < 0.75:
        return rng.choice(NAMES)
    if r < 0.85:
        return uuid_tok(rng)
    if r < 0.95:
        return rng.choice(GHOSTS)
    return rng.choice(["uuid:" + BOGUS_UUID, "uuid:ghost",
                       "uuid:00000000-0000-0000-0000-000000000000"])


def src_tok(rng):
    r = rng.random()
    if r < 0.35:
        return name_tok(rng)
    if r < 0.55:
        return "@anyvm"
    if r < 0.62:
        return "@adminvm"
    if r < 0.68:
        return "*"
    if r < 0.76:
        return "@type:" + rng.choice(TYPES + ["Foo", "appvm"])
    if r < 0.84:
        return "@tag:" + rng.choice(TAGS + ["nosuch"])
    if r < 0.92:
        return "@dispvm:" + rng.choice(DVM_TEMPLATES * 3 + NAMES + GHOSTS[:1] +
                                       [uuid_tok(rng, rng.choice(DVM_TEMPLATES)),
                                        uuid_tok(rng)])
    return "@dispvm:@tag:" + rng.choice(TAGS + ["nosuch"])


def tgt_tok(rng):
    r = rng.random()
    if r < 0.12:
        return "@default"
    if r < 0.22:
        return "@dispvm"
    return src_tok(rng)


def redir_tok(rng):
    r = rng.random()
    if r < 0.6:
        return name_tok(rng)
    if r < 0.7:
        return "@adminvm"
    if r < 0.8:
        return "@dispvm"
    if r < 0.95:
        return "@dispvm:" + rng.choice(DVM_TEMPLATES * 2 + NAMES[:4] +
                                       [uuid_tok(rng, rng.choice(DVM_TEMPLATES))])
    return "dom0"


BAD_SRC = ["@\U0001FAE8", "@default", "@dispvm", "@foo", "@", "@anyVM", "@type:", "@tag:",
           "@dispvm:", "@dispvm:@tag:", "@dispvm:@foo", "@tag:@x",
           "@adminvm:x", "@ADMINVM", "@dispvm:@dispvm", "@type:@tag:x",
           "@Default", "@@anyvm", "@anyvm@"]
BAD_TGT = ["@foo", "@", "@ADMINVM", "@type:", "@dispvm:@x", "@dispvm:@tag:",
           "@tag:", "@defaultx", "@dispvmx", "@anyvm:", "@Dispvm"]
BAD_REDIR = ["@default", "@anyvm", "@type:AppVM", "@tag:work", "*", "",
             "@dispvm:@tag:dvm-tag", "@dispvm:", "@foo", "@dispvm:@tag:",
             "@type:", "@tag:"]


def odd_str(rng, base):
    ch = rng.choice(NOT_WS)
    i = rng.randint(0, len(base))
    return base[:i] + ch + base[i:]


def gen_params(rng, action, target):
    """Valid params for action (as list of 'k=v')."""
    ps = []
    if action == "deny":
        if rng.random() < 0.3:
            ps.append("notify=" + rng.choice(["yes", "no"]))
        return ps
    if action == "allow":
        if target == "@default" or rng.random() < 0.3:
            ps.append("target=" + redir_tok(rng))
    else:
        if rng.random() < 0.2:
            ps.append("target=" + redir_tok(rng))
        if rng.random() < 0.35:
            ps.append("default_target=" + rng.choice(
                [redir_tok(rng), rng.choice(NAMES), "@dispvm"]))
    if rng.random() < 0.2:
        ps.append("user=" + rng.choice(["root", "user", "", "a=b", "DEFAULT",
                                        "us'er", "ü"]))
    if rng.random() < 0.2:
        ps.append("notify=" + rng.choice(["yes", "no"]))
    if rng.random() < 0.25:
        ps.append("autostart=" + rng.choice(["yes", "no"]))
    rng.shuffle(ps)
    return ps


def gen_rule_fields(rng, services, args):
    if rng.random() < 0.15:
        service = "*"
        arg = "*"
    else:
        service = rng.choice(services)
        arg = rng.choice(["*", "*", "*"] + args)
    source = src_tok(rng)
    target = tgt_tok(rng)
    action = rng.choices(["allow", "deny", "ask"], [4, 3, 3])[0]
    params = gen_params(rng, action, target)
    return [service, arg, source, target, action] + params


MUTATIONS = [
    "src", "tgt", "redir", "defredir", "noeq", "dup", "unknownparam",
    "badbool", "deny_param", "allow_default_target", "action", "fields",
    "service", "argument", "star_arg", "inline_comment", "zwsp", "caseparam",
    "allow_default_notarget", "nonbmp_service", "quote_service",
    "param_list_repr", "emptyfield_ws",
]


def mutate_fields(rng, f):
    """Return (fields, kind) with one mutation (fields may be a raw str)."""
    m = rng.choice(MUTATIONS)
    f = list(f)
    if m == "src":
        f[2] = rng.choice(BAD_SRC)
    elif m == "tgt":
        f[3] = rng.choice(BAD_TGT)
    elif m == "redir":
        f[4] = rng.choice(["allow", "ask"])
        f[5:] = ["target=" + rng.choice(BAD_REDIR)]
    elif m == "defredir":
        f[4] = "ask"
        f[5:] = ["default_target=" + rng.choice(BAD_REDIR)]
    elif m == "noeq":
        f.append(rng.choice(["target", "notify", "x", "#", "allow", "=",
                             "=x", "user=a=b=c"]))
    elif m == "dup":
        f[4] = rng.choice(["allow", "ask", "deny"])
        k = "notify" if f[4] == "deny" else rng.choice(
            ["user", "target", "notify", "autostart"])
        v = {"user": "u", "target": "work", "notify": "yes",
             "autostart": "no"}[k]
        f[5:] = [k + "=" + v, k + "=" + v]
        if f[4] == "allow" and f[3] == "@default" and k != "target":
            f.append("target=work")
    elif m == "unknownparam":
        f.append(rng.choice(["foo=bar", "Target=work", "target_default=x",
                             "default-target=x", "=", "=x"]))
    elif m == "badbool":
        f[4] = rng.choice(["allow", "ask", "deny"])
        f[5:] = [rng.choice(["notify", "autostart"]) + "=" +
                 rng.choice(["Yes", "", "1", "true", "no ", "NO", "y"])]
        if f[4] == "allow" and f[3] == "@default":
            f.append("target=work")
    elif m == "deny_param":
        f[4] = "deny"
        f[5:] = [rng.choice(["target=work", "autostart=no", "user=root",
                             "default_target=work", "notify=no"])]
        if rng.random() < 0.5:
            f.append("target=x")
    elif m == "allow_default_target":
        f[4] = "allow"
        f[5:] = ["default_target=work"] + (["target=work"] if rng.random() < .5 else [])
    elif m == "action":
        f[4] = rng.choice(["Allow", "permit", "allow,target=work", "deny#x",
                           "ASK", "allowed", "", "@anyvm", "allow\u200b"])
        if f[4] == "":
            del f[4]
    elif m == "fields":
        n = rng.choice([1, 2, 3, 4])
        f = f[:n]
    elif m == "service":
        f[0] = rng.choice(["svc+arg", "svc/x", "Svc\u200b", "\ufeffsvc",
                           "sérvice", "**", "svc*", "a+", "+", "+a", "-",
                           "svc$", "s:x", odd_str(rng, "test.A")])
    elif m == "argument":
        f[1] = rng.choice(["a", "+a/b", "+ä", "**", "+*", "x+", "+a:b",
                           "+a/b:c", odd_str(rng, "+arg")])
    elif m == "star_arg":
        f[0] = "*"
        f[1] = rng.choice(["+", "+a", "+x"])
    elif m == "inline_comment":
        f.append(rng.choice(["#", "# comment", "#comment"]))
    elif m == "zwsp":
        i = rng.randint(0, len(f) - 1)
        f[i] = odd_str(rng, f[i])
    elif m == "caseparam":
        f[4] = rng.choice(["allow", "ask"])
        f[5:] = [rng.choice(["TARGET=work", "Notify=yes", "user=root=x",
                             "target=Work", "target=@DISPVM",
                             "target=@AdminVM"])]
        if f[4] == "allow" and f[3] == "@default":
            f.append("target=work")
    elif m == "allow_default_notarget":
        f[3] = "@default"
        f[4] = "allow"
        f[5:] = [p for p in f[5:] if not p.startswith("target=")] or \
            rng.choice([[], ["user=root"], ["notify=yes"]])
    elif m == "nonbmp_service":
        f[0] = rng.choice(["s" + rng.choice(NEW_UNICODE[:1]), "s\U0001F600", "\U0001F600\ue000x",
                           "a\ue000\U00010000b", "x\U000E0001", "y\u0301é",
                           "z\x7f\x00", "q\ud7ff\uffff"])
    elif m == "quote_service":
        f[0] = rng.choice(["svc'x", 'svc"x', "svc'\"x", "svc\\x",
                           "a'b\"c\\d"])
    elif m == "param_list_repr":
        f[4] = "deny"
        f[5:] = [rng.choice(["user='x'", 'user="y"', "target=ü", "user=\\",
                             "user=" + rng.choice(NEW_UNICODE),
                             "target=a'\"b", "user=\U0001F600",
                             "target=\x7f"])]
    elif m == "emptyfield_ws":
        f = f[:5]
        return f, m
    return f, m


def join_fields(rng, fields, odd):
    out = fields[0]
    for x in fields[1:]:
        out += sep(rng, odd) + x
    return out


COMMENTS = ["# comment", "#", "   # indented", "\t#tab", "#!include nowhere",
            "# ünïcödé", "\x85# nel", "\xa0# nbsp"]


def gen_rule_line(ctx, odd, mutate):
    rng = ctx.rng
    f = gen_rule_fields(rng, ctx.services, ctx.args)
    ctx.rules.append(f[:4])
    kind = None
    if mutate:
        f, kind = mutate_fields(rng, f)
    line = join_fields(rng, f, odd)
    if odd and rng.random() < 0.2:
        line = sep(rng, True) + line
    if odd and rng.random() < 0.2:
        line = line + sep(rng, True)
    return line, kind


class Ctx:
    """One case being generated."""

    def __init__(self, rng):
        self.rng = rng
        self.files = {}
        self.services = rng.sample(SERVICES, rng.randint(1, 3))
        self.args = rng.sample(ARGS, rng.randint(1, 3))
        self.mutations = []
        self.include_names = []  # (top directory, "new"/"old", name)
        self.where = "policy.d"  # the top directory being written
        # (service, argument, source, target) of the rules written, which
        # queries aim at: random queries would mostly match nothing
        self.rules = []
        self.missing_runtime = False


INC_PATH_FORMS = [
    "include/{}", "include/{}", "include/{}", "./include/{}",
    "include/../include/{}", "include//{}",
]


def gen_include_content(ctx, depth, mutate, kind="new"):
    """Lines for an !include file (new syntax) or !include-service (old)."""
    rng = ctx.rng
    lines = []
    for _ in range(rng.randint(0, 4)):
        if kind == "new":
            line, _ = gen_rule_line(ctx, odd=rng.random() < 0.1, mutate=False)
        else:
            line = gen_old_line(ctx)
        lines.append(line)
    if rng.random() < 0.2:
        lines.insert(rng.randint(0, len(lines)), rng.choice(COMMENTS))
    if depth < 2 and rng.random() < 0.25:
        if kind == "new":
            d = gen_directive(ctx, depth + 1)
            if d:
                lines.insert(rng.randint(0, len(lines)), d)
        else:
            sub = new_include_file(ctx, depth + 1, mutate=False, kind=kind)
            lines.insert(rng.randint(0, len(lines)),
                         rng.choice(["$include:", "!include "]) +
                         "include/" + sub)
    if mutate and lines:
        i = rng.randrange(len(lines))
        if kind == "new":
            lines[i], k = gen_rule_line(ctx, False, True)
            ctx.mutations.append("inc:" + str(k))
        else:
            lines[i] = rng.choice([
                "$anyvm", "$anyvm $anyvm", "$anyvm $anyvm permit",
                "!compat-4.0", "!include-dir include", "svc * $anyvm $anyvm allow",
                "$anyvm $anyvm allow,target", "$anyvm $anyvm allow,,target=work",
                "$anyvm $anyvm allow,target=work,target=work",
                "$anyvm $foo allow", "$include:", "$include:a b",
                "$anyvm $anyvm allow,default_target=work",
                "$anyvm, $anyvm, deny", "$default $anyvm deny",
                "@anyvm @anyvm ask,default_target=$dispvm",
            ])
            ctx.mutations.append("incsvc")
    return lines


def gen_old_line(ctx):
    rng = ctx.rng
    src = src_tok(rng).replace("@", rng.choice(["@", "$"]))
    tgt = tgt_tok(rng).replace("@", rng.choice(["@", "$"]))
    action = rng.choice(["allow", "deny", "ask"])
    params = gen_params(rng, action, tgt.replace("$", "@"))
    sepc = rng.choice([",", ",", " "])
    act = sepc.join([action] + params) if params else action
    return "{} {} {}".format(src, tgt, act)


def new_include_file(ctx, depth, mutate, kind="new", where=None):
    rng = ctx.rng
    where = where or ctx.where
    name = rng.choice(["inc-a", "inc-b", "inc-c", "x.policy", "svc-1",
                       "Inc_D"])
    same = [n for w, k, n in ctx.include_names if w == where and k == kind]
    if rng.random() < (0.3 if depth == 0 else 0.05) and same:
        return rng.choice(same)  # reuse (maybe a cycle)
    if any(w == where and n == name for w, k, n in ctx.include_names):
        name = name + "-" + kind + str(len(ctx.include_names))
    ctx.include_names.append((where, kind, name))
    path = where + "/include/" + name
    content = gen_include_content(ctx, depth, mutate, kind)
    ctx.files[path] = encode_lines(ctx, content, odd=False)
    return name


def gen_directive(ctx, depth, where=None):
    rng = ctx.rng
    where = where or ctx.where
    r = rng.random()
    if r < 0.4:
        name = new_include_file(ctx, depth, mutate=False, where=where)
        return "!include " + rng.choice(INC_PATH_FORMS).format(name)
    if r < 0.6:
        # include-dir
        dname = rng.choice(["d", "dir", "d2"])
        base = where + "/include/" + dname + "/"
        for _ in range(rng.randint(0, 3)):
            fname = rng.choice(["10-a.policy", "20-b.policy", "05-z.policy",
                                "a.policy", "notes.txt", ".h.policy",
                                "1_x.policy", "1-x.policy", "1.x.policy"])
            lines = [gen_rule_line(ctx, False, False)[0]
                     for _ in range(rng.randint(0, 3))]
            ctx.files[base + fname] = encode_lines(ctx, lines, odd=False)
        if base.rstrip("/") not in ctx.files:
            ctx.files[base.rstrip("/")] = ("dir",)
        return "!include-dir " + rng.choice(["include/", "./include/", "include/../include/"]) + dname
    if r < 0.85:
        name = new_include_file(ctx, depth, mutate=False, kind="old", where=where)
        svc = rng.choice(ctx.services + ["*"])
        arg = "*" if svc == "*" else rng.choice(["*"] + ctx.args)
        return "!include-service {} {} include/{}".format(svc, arg, name)
    return "!compat-4.0"


BAD_DIRECTIVES = [
    "!include", "!include a b", "!include include/missing", "!include-dir",
    "!include-dir include/missing", "!include-dir include/inc-a",
    "!include include", "!include-service svc *", "!include-service * + include/inc-a",
    "!include-service sv/c * include/inc-a", "!include-service svc a include/inc-a",
    "!include-service svc * include/missing", "!compat-4.0 x", "!unknown",
    "! include include/inc-a", "!Include include/inc-a", "!include-service svc * include",
    "!include /etc/passwd", "!include ../policy.d/include/inc-a",
    "!include-dir .", "!include-dir include", "!include-service svc +a+b include/inc-a",
    "!", "!compat-4.0\u200b", "!include\u00a0include/inc-a",
]

LEGACY_NAMES = ["test.A", "test.A+a", "test.A+", "test.B", "test.B+b",
                "qubes.Filecopy", "test.A+a.rpmsave", ".hidden", "bad name",
                "test.A.swp", "my-Svc_1.x+x.y-z_1", "test.B+A", "a+b+c",
                "+x", "+", "x.", "test.A+a+"]


def gen_legacy(ctx):
    rng = ctx.rng
    if rng.random() < 0.15:
        return  # no legacy dir at all
    ctx.files["legacy"] = ("dir",)
    for _ in range(rng.randint(0, 4)):
        name = rng.choice(LEGACY_NAMES)
        lines = [gen_old_line(ctx) for _ in range(rng.randint(0, 3))]
        if rng.random() < 0.2:
            lines.insert(0, rng.choice(["## comment", "$include:include/li",
                                        "$anyvm $anyvm deny,notify=no"]))
            ctx.files["legacy/include/li"] = encode_lines(
                ctx, [gen_old_line(ctx)], odd=False)
        ctx.files["legacy/" + name] = encode_lines(ctx, lines, odd=False)
        svc = name.split("+")[0]
        if name in ("test.A+a.rpmsave", ".hidden", "bad name", "test.A.swp"):
            continue
        if svc not in ctx.services and rng.random() < 0.5 and svc:
            ctx.services.append(svc)
    if rng.random() < 0.1:
        ctx.files["legacy/test.B+ln"] = ("symlink", rng.choice(
            ["include/li", "test.A", "nowhere", "../policy.d/include"]))
        ctx.files.setdefault("legacy/include/li", b"@anyvm @anyvm allow,target=work\n")


TOP_NAMES = ["00-a.policy", "10-x.policy", "30-x.policy", "50-y.policy",
             "50_y.policy", "50.y.policy", "50y.policy", "5-z.policy",
             "90-default.policy", "a.policy", "_z.policy", "-x.policy",
             "z.policy", "30-x-y.policy", "30-x.y.policy", "0.policy",
             "30-x_y.policy", "30-xy.policy", "30-x0.policy"]
IGNORED_NAMES = [".hidden.policy", "x.policy~", "README", "x.Policy",
                 "x.policy.rpmsave", "x.policy.swp", "x.policyx"]
BAD_NAMES = ["50-Y.policy", "50+x.policy", "50 x.policy", "é.policy",
             "50-x:y.policy", "A.policy", "~x.policy"]


def encode_lines(ctx, lines, odd):
    rng = ctx.rng
    if not lines:
        return b""
    eol = "\n"
    if odd:
        eol = rng.choice(["\n", "\n", "\r\n", "\r"])
    parts = []
    for ln in lines:
        e = eol
        if odd and rng.random() < 0.05:
            e = rng.choice(["\r", "\r\n", "\n"])
        parts.append(ln + e)
    text = "".join(parts)
    if odd and rng.random() < 0.2:
        text = text.rstrip("\r\n")
    return text.encode("utf-8", "surrogatepass")


def gen_top_file(ctx, mutate_here, where):
    rng = ctx.rng
    ctx.where = where
    odd = rng.random() < 0.25
    lines = []
    n = rng.randint(0, 10)
    for _ in range(n):
        r = rng.random()
        if r < 0.08:
            lines.append(rng.choice(COMMENTS))
        elif r < 0.11:
            lines.append(rng.choice(["", "   ", "\t", "\x0c", "\x85"]))
        elif r < 0.22:
            d = gen_directive(ctx, 0, where=where if rng.random() < 0.85 else "policy.d")
            if d:
                lines.append(d)
        else:
            lines.append(gen_rule_line(ctx, odd, False)[0])
    if rng.random() < 0.3:
        # catch-all at the end
        lines.append(rng.choice([
            "* * @anyvm @anyvm deny", "* * @anyvm @anyvm ask",
            "* * @anyvm @anyvm allow target=work", "* * @anyvm * ask",
            "* * * * deny notify=no", "* * @anyvm @dispvm allow",
            "* * @anyvm @default ask default_target=@dispvm",
        ]))
    raw_prefix = b""
    raw_insert = None
    if mutate_here:
        r = rng.random()
        if r < 0.55:
            line, k = gen_rule_line(ctx, odd, True)
            lines.insert(rng.randint(0, len(lines)), line)
            ctx.mutations.append(k)
        elif r < 0.7:
            lines.insert(rng.randint(0, len(lines)), rng.choice(BAD_DIRECTIVES))
            ctx.mutations.append("directive")
            if rng.random() < 0.5:
                new_include_file(ctx, 0, mutate=False)
        elif r < 0.78:
            raw_prefix = b"\xef\xbb\xbf"
            ctx.mutations.append("bom")
        elif r < 0.86:
            raw_insert = rng.choice([b"# caf\xe9", b"svc * @anyvm @anyvm allow user=\xff",
                                     b"\xc3", b"# \xed\xa0\x80 surrogate",
                                     b"\x00\x00"])
            ctx.mutations.append("nonutf8")
        elif r < 0.93:
            # include file with a mutation
            kind = rng.choice(["new", "old"])
            name = new_include_file(ctx, 0, mutate=True, kind=kind, where=where)
            lines.insert(rng.randint(0, len(lines)),
                         "!include include/" + name if kind == "new"
                         else "!include-service {} * include/{}".format(
                             rng.choice(ctx.services), name))
        else:
            # cycle
            lines.append("!include include/cyc")
            ctx.files[where + "/include/cyc"] = b"!include include/cyc\n"
            ctx.mutations.append("cycle")
    data = raw_prefix + encode_lines(ctx, lines, odd)
    if raw_insert is not None:
        data += raw_insert + b"\n"
    return data


def gen_case(rng):
    ctx = Ctx(rng)
    mutate = rng.random() < 0.4
    ntop = rng.randint(1, 5)
    names = rng.sample(TOP_NAMES, ntop)
    mut_idx = rng.randrange(ntop) if mutate else -1
    runtime = rng.random() < 0.25
    gen_legacy(ctx)
    ctx.files["policy.d"] = ("dir",)
    for i, name in enumerate(names):
        where = "policy.d"
        if runtime and rng.random() < 0.4:
            where = "runtime"
        ctx.files[where + "/" + name] = gen_top_file(ctx, i == mut_idx, where)
    if runtime:
        ctx.files["runtime"] = ("dir",)
        # same-named file in both dirs
        if rng.random() < 0.5:
            name = rng.choice(names)
            other = "runtime" if ("policy.d/" + name) in ctx.files else "policy.d"
            ctx.files[other + "/" + name] = gen_top_file(ctx, False, other)
    # ignored files
    if rng.random() < 0.2:
        ctx.files["policy.d/" + rng.choice(IGNORED_NAMES)] = b"garbage here\n"
    if rng.random() < 0.05:
        ctx.files["policy.d/dir.policy/x.policy"] = b"garbage\n"
    if mutate and rng.random() < 0.08:
        where = "runtime" if runtime and rng.random() < 0.5 else "policy.d"
        ctx.files[where + "/" + rng.choice(BAD_NAMES)] = b"* * @anyvm @anyvm deny\n"
        ctx.mutations.append("badname")
    if rng.random() < 0.06:
        ctx.files["policy.d/" + rng.choice(["60-empty.policy", "00-empty.policy"])] = \
            rng.choice([b"", b"\n", b"\n\n#\n", b"\r"])
    if rng.random() < 0.05:
        # symlinks
        inc = new_include_file(ctx, 0, mutate=False)
        ctx.files["policy.d/" + rng.choice(["40-link.policy", "45-dangling.policy"])] = \
            ("symlink", rng.choice(["include/" + inc, "include/nowhere"]))
    if rng.random() < 0.01:
        gen_symlink_dotdot(ctx)
    if rng.random() < 0.01:
        gen_big_file(ctx)
    if runtime and rng.random() < 0.01:
        # runtime dir given but missing
        for k in [k for k in ctx.files if k == "runtime" or k.startswith("runtime/")]:
            del ctx.files[k]
        ctx.missing_runtime = True
        ctx.mutations.append("missing-runtime")
    # a mutated policy mostly fails to load, and then every query alike
    queries = gen_queries(ctx, 6 if mutate else rng.randint(12, 30))
    return {"files": ctx.files, "runtime": runtime, "queries": queries,
            "missing_runtime": ctx.missing_runtime,
            "mutations": ctx.mutations}


Q_TARGETS = (NAMES * 2 + ["@default", "@default", "@dispvm", "@dispvm", "",
                          "@adminvm", "dom0", "ghost"] +
             ["@dispvm:" + n for n in DVM_TEMPLATES] +
             ["uuid:" + UUIDS[n] for n in ("work", "personal", "dom0", "default-dvm",
                                           "remote1", "remote2", "sys-relay", "vault")] +
             ["@dispvm:uuid:" + UUIDS["default-dvm"], "@dispvm:work",
              "@dispvm:uuid:" + UUIDS["work-dvm"], "@dispvm:uuid:" + UUIDS["work"],
              "@dispvm:uuid:" + UUIDS["default-mgmt-dvm"], "@dispvm:default-mgmt-dvm",
              "@dispvm:ghost", "@anyvm", "@tag:work", "@type:AppVM", "@foo",
              "uuid:ghost", "@dispvm:", "@", "uuid:" + BOGUS_UUID, "*",
              "@dispvm:@tag:dvm-tag", "@Default", "wörk"])
Q_TARGETS_COMMON = NAMES + ["@default", "@dispvm", "", "@adminvm", "dom0"] + \
    ["@dispvm:" + n for n in DVM_TEMPLATES]
Q_SOURCES = NAMES * 3 + ["uuid:" + UUIDS["work"], "uuid:" + UUIDS["dom0"],
                         "uuid:" + UUIDS["sys-relay"], "uuid:" + UUIDS["default-dvm"],
                         "ghost", "", "@adminvm"]


def gen_queries(ctx, n):
    rng = ctx.rng
    qs = []
    for i in range(n):
        svc = rng.choice(ctx.services) if rng.random() < 0.85 else \
            rng.choice(SERVICES + ["other.Svc", "test.a", "*", "", "", "x."])
        r = rng.random()
        if r < 0.4:
            arg = ""
        elif r < 0.85:
            arg = rng.choice(ctx.args)
        else:
            arg = rng.choice(ARGS + ["+zz", "+", "a", "+a/b", "++"])
        src = rng.choice(Q_SOURCES)
        tgt = rng.choice(Q_TARGETS) if rng.random() < 0.5 else rng.choice(Q_TARGETS_COMMON)
        if ctx.rules and rng.random() < 0.6:
            # aim at a generated rule
            rs, ra, rsrc, rtgt = rng.choice(ctx.rules)
            if rs != "*":
                svc = rs
            if ra != "*":
                arg = ra if (ra != "+" or rng.random() < 0.5) else ""
            if rsrc in DOMAINS or rsrc.startswith("uuid:"):
                src = rsrc
            if rtgt in DOMAINS or rtgt in ("@default", "@dispvm", "@adminvm") \
                    or rtgt.startswith("@dispvm:") or rtgt.startswith("uuid:"):
                tgt = rtgt
        q = {"id": "q{:03d}".format(i), "service": svc, "argument": arg,
             "source": src, "target": tgt}
        if rng.random() < 0.05:
            q["source"] = rng.choice(["sys-relay", "sys-relay", "work",
                                      "uuid:" + UUIDS["sys-relay"]])
            q["requested_source"] = rng.choice(["remote1", "remote2", "work",
                                                "ghost", "remote1",
                                                "uuid:" + UUIDS["remote1"]])
        qs.append(q)
    return qs


def gen_symlink_dotdot(ctx):
    """A symlinked directory followed by '..' in an include path: pathlib's
    resolve() follows the link first, a lexical normalisation does not."""
    rng = ctx.rng
    ctx.mutations.append("symlink-dotdot")
    ctx.files["policy.d/include/deep/dd"] = ("dir",)
    ctx.files["policy.d/include/ld"] = ("symlink", "deep/dd")
    ctx.files["policy.d/include/deep/f"] = b"test.A * @anyvm @anyvm allow target=vault\n"
    if rng.random() < 0.7:
        ctx.files["policy.d/include/f"] = b"test.A * @anyvm @anyvm allow target=work\n"
    if rng.random() < 0.3:
        ctx.files["policy.d/include/deep/dd/g.policy"] = b"test.A * @anyvm @anyvm deny\n"
    d = rng.choice(["!include include/ld/../f", "!include-service test.A * include/ld/../f2",
                    "!include-dir include/ld/../dd", "!include include/ld/../deep/f",
                    "!include include/ld/./../f"])
    if "f2" in d:
        ctx.files["policy.d/include/deep/f2"] = b"@anyvm @anyvm allow,target=vault\n"
        if rng.random() < 0.7:
            ctx.files["policy.d/include/f2"] = b"@anyvm @anyvm allow,target=work\n"
    ctx.files["policy.d/05-sym.policy"] = (d + "\n").encode()
    if "test.A" not in ctx.services:
        ctx.services.append("test.A")


def gen_big_file(ctx):
    """A file over one read chunk (8 KiB): an early error and a late invalid
    UTF-8 byte, or a late error only."""
    rng = ctx.rng
    ctx.mutations.append("bigfile")
    early = rng.choice(["svc * @anyvm @anyvm permit", "test.A * @anyvm @anyvm allow",
                        "!include include/missing"])
    pad = b"".join(b"# padding line %05d ..........................................\n" % i
                   for i in range(rng.choice([100, 140, 200, 400])))
    late = rng.choice([b"# caf\xe9\n", b"x \xff\n", b"test.B * @anyvm @anyvm deny\n"])
    pre = b"# pad\n" * rng.choice([0, 1, 120])
    ctx.files["policy.d/" + rng.choice(["20-big.policy", "95-big.policy"])] = \
        pre + early.encode() + b"\n" + pad + late
