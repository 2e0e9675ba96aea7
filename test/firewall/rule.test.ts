// The rule model in-process: what Qubes' qubes/firewall.py accepts, refuses
// and prints for a rule line (expected values checked against Qubes), and
// the old (R3) firewall.xml format.
import t from 'tap';
import { apiRule, parseApiRule } from '../../qubesd/firewall/rule.js';
import { parseFirewallXml, serializeFirewallXml } from '../../qubesd/firewall/file.js';
import { isInet4, isInet6, pySplitLines } from '../../qubesd/firewall/pytext.js';

const line = (s: string): string => {
  try {
    return apiRule(parseApiRule(s)) ?? '(expired)';
  } catch (e) {
    return 'ERR ' + (e as Error).message;
  }
};

t.test('accepted lines and how Qubes writes them back', async (t) => {
  const cases: Array<[string, string]> = [
    ['action=accept proto=tcp dstports=80', 'action=accept proto=tcp dstports=80-80'],
    ['action=accept proto=tcp dstports=0080', 'action=accept proto=tcp dstports=80-80'],
    ['action=accept proto=tcp dstports=1_0', 'action=accept proto=tcp dstports=10-10'],
    ['action=accept proto=tcp dstports=\t80', 'action=accept proto=tcp dstports=80-80'],
    ['action=accept proto=icmp icmptype=008', 'action=accept proto=icmp icmptype=8'],
    ['action=accept dsthost=1.2.3.4', 'action=accept dst4=1.2.3.4/32'],
    ['action=accept dsthost=1.2.3.4/008', 'action=accept dst4=1.2.3.4/008'],
    ['action=accept dsthost=01.2.3.4', 'action=accept dsthost=01.2.3.4'],
    ['action=accept dsthost=::ffff:1.2.3.4', 'action=accept dst6=::ffff:1.2.3.4/128'],
    ['action=accept dsthost=1:2:3:4:5:6:7::', 'action=accept dst6=1:2:3:4:5:6:7::/128'],
    ['action=accept dst4=example.com', 'action=accept dsthost=example.com'],
    ['action=accept dstname=example.com', 'action=accept dsthost=example.com'],
    ['action=accept comment=', 'action=accept'],
    [' action=accept proto=tcp ', 'action=accept proto=tcp'],
    ['action=accept expire=1499450306', '(expired)'],
    [
      'action=drop proto=udp dstports=53 dsthost=10.0.0.0/8 expire=2099450306 comment=DNS thing',
      'action=drop expire=2099450306 dst4=10.0.0.0/8 proto=udp dstports=53-53 comment=DNS thing',
    ],
    ['action=accept dsthost=a.b dstports=22 proto=tcp specialtarget=dns', 'action=accept dsthost=a.b proto=tcp specialtarget=dns dstports=22-22'],
  ];
  for (const [input, out] of cases) t.equal(line(input), out, input);
});

t.test("refused lines carry Qubes' messages", async (t) => {
  const cases: Array<[string, string]> = [
    ['action=acc%pt', 'strange characters in rule'],
    ['action=accept proto=tcp dstports=1__0', "invalid literal for int() with base 10: '1__0'"],
    ['action=accept proto=tcp dstports=-80', "invalid literal for int() with base 10: ''"],
    ['action=accept proto=tcp dstports=1-2-3', '1-2-3'],
    ['action=accept proto=icmp icmptype=0008', 'bad ICMP type'],
    ['action=accept proto=sctp', 'sctp'],
    ['action=accept dsthost=01.2.3.4/8', 'Invalid IP address: 01.2.3.4'],
    ['action=accept dsthost=1.2.3.4/', 'bad prefix length'],
    ['action=accept dsthost=a/b/c', 'Too many /: a/b/c'],
    ['action=accept dsthost=2001:db8:::1', 'Invalid hostname'],
    ['action=accept dsthost=1:2:3:4:5:6:7:8:9', 'Invalid hostname'],
    ['action=accept dsthost=host/24', 'Invalid IP address: host'],
    ['action=accept dst4=1.2.3.4 dst6=::1', "Option 'dsthost' already set"],
    ['action=accept expire=+5', 'strange characters in rule'],
    ['action=accept expire=99999999999999', 'year 3170843 is out of range'],
    ['comment=x action=accept', 'strange characters comment'],
    ['action=accept\tproto=tcp', 'strange characters in rule'],
    ['action=accept proto', 'not enough values to unpack (expected 2, got 1)'],
  ];
  for (const [input, message] of cases) t.equal(line(input), 'ERR ' + message, input);
});

t.test('address parsing follows inet_pton', async (t) => {
  for (const a of ['0.0.0.0', '255.255.255.255', '10.1.2.3']) t.ok(isInet4(a), a);
  for (const a of ['256.1.1.1', '1.2.3', '1.2.3.4.', '01.2.3.4', '1..2.3', '']) t.notOk(isInet4(a), a);
  for (const a of ['::', '::1', 'fe80::1', '1:2:3:4:5:6:7:8', '::ffff:10.0.0.1', 'A:B::c']) t.ok(isInet6(a), a);
  for (const a of [':1', '1:', ':::', '1::2::3', '12345::', '1:2:3:4:5:6:7:8:9', '::1:2:3:4:5:6:7:8', 'fe80::1%eth0', '']) t.notOk(isInet6(a), a);
});

t.test('payload lines split as Python splitlines', async (t) => {
  t.same(pySplitLines('a\nb\r\nc\rd\x0be\n'), ['a', 'b', 'c', 'd', 'e']);
  t.same(pySplitLines('a\n\nb'), ['a', '', 'b']);
});

t.test('an R3 (version 1) firewall.xml', async (t) => {
  const v1 =
    '<QubesFirewallRules policy="allow" dns="allow" icmp="deny" yumProxy="allow">\n' +
    '  <rule address="1.2.3.4" netmask="24" proto="tcp" port="80" toport="90"/>\n' +
    '  <rule address="example.com" port="443"/>\n' +
    '  <rule address="10.0.0.0" netmask="0" proto="any" expire="2099450306"/>\n' +
    '  <rule proto="udp" port="53"/>\n' +
    '</QubesFirewallRules>\n';
  t.same(
    parseFirewallXml(v1).map((r) => apiRule(r)),
    [
      'action=accept specialtarget=dns',
      'action=drop proto=icmp',
      'action=drop dst4=1.2.3.4/24 proto=tcp dstports=80-90',
      'action=drop dsthost=example.com proto=tcp dstports=443-443',
      'action=drop expire=2099450306 dst4=10.0.0.0/32',
      'action=drop proto=udp dstports=53-53',
      'action=accept',
    ],
  );
  t.equal(serializeFirewallXml([]), '<firewall version="2">\n  <rules/>\n</firewall>\n');
});
