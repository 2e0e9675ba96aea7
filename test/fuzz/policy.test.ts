// Properties of the qrexec policy parser and engine: any policy text (valid
// rules, broken rules, directives, random bytes) loads or is refused with the
// engine's own AccessDenied/PolicySyntaxError naming the file; a loaded policy
// answers any request with a resolution, never an exception; the policy
// daemon's request parser refuses malformed requests without throwing.
import t from 'tap';
import fc from 'fast-check';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadPolicy, decodePolicyText } from '../../policy/loader.js';
import { PolicyEvaluator } from '../../policy/evaluator.js';
import { AccessDenied, PolicySyntaxError } from '../../policy/errors.js';
import { parseDaemonRequest } from '../../policy/daemon/request.js';
import { resolvePath } from '../../policy/fsutil.js';
import { systemInfo } from '../policy/helpers.js';
import { holds, runs } from './fc.js';

const root = mkdtempSync(join(tmpdir(), 'fuzz-policy-'));
const policyDir = join(root, 'policy.d');
mkdirSync(policyDir);
t.teardown(() => rmSync(root, { recursive: true, force: true }));
const file = join(resolvePath(policyDir), '50-fuzz.policy');

const word = fc.oneof(
  fc.constantFrom(
    'admin.vm.List',
    'qubes.Filecopy',
    '*',
    '+',
    '+arg',
    '+a+b',
    '@anyvm',
    '@adminvm',
    '@default',
    '@dispvm',
    '@dispvm:tpl',
    '@tag:work',
    '@tag:',
    '@type:AppVM',
    '@type:',
    '@uuid:00000000-0000-0000-0000-000000000000',
    'dom0',
    'work',
    'vault',
    'allow',
    'deny',
    'ask',
    'target=dom0',
    'target=@adminvm',
    'default_target=vault',
    'user=root',
    'notify=yes',
    'notify=maybe',
    'autostart=no',
    'service=other',
    '@dispvm:@tag:x',
    '@anyvm@',
    '#',
    '\\',
    '"',
    '=',
    ',',
    'allow,target=dom0',
    '!include',
    '!include-dir',
    '!include-service',
    '!compat-4.0',
  ),
  fc.string({ unit: 'binary-ascii', maxLength: 8 }),
  fc.string({ unit: 'grapheme', maxLength: 4 }),
);
/** A rule made of plausible columns, so that many generated policies load. */
const rule = fc
  .tuple(
    fc.constantFrom('admin.vm.List', 'qubes.Filecopy', '*', 'svc'),
    fc.constantFrom('*', '+', '+arg'),
    fc.constantFrom('@anyvm', 'work', '@tag:work', '@type:AppVM', 'dom0', '*'),
    fc.constantFrom('@anyvm', '@adminvm', '@default', '@dispvm', '@dispvm:work', 'vault', '@tag:x', '*', '@type:TemplateVM'),
    fc.constantFrom('allow', 'deny', 'ask'),
    fc.subarray(['target=dom0', 'default_target=vault', 'user=root', 'notify=yes', 'autostart=no', 'target=@dispvm']),
  )
  .map(([s, a, src, tgt, act, params]) => [s, a, src, tgt, act, ...params].join(' '));
const line = fc.oneof(
  { weight: 4, arbitrary: rule },
  { weight: 4, arbitrary: fc.array(word, { minLength: 0, maxLength: 8 }).map((w) => w.join(' ')) },
  {
    weight: 1,
    arbitrary: fc.constantFrom('', '# comment', '   ', '\t', '!include missing.policy', '!include-dir /nonexistent', '!include-service a b c', '!compat-4.0 x'),
  },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
);
const policyText = fc.array(line, { maxLength: 12 }).map((l) => l.join('\n'));

/** Load `text` as the only policy file; null when refused cleanly, else the rules. */
function load(text: string): ReturnType<typeof loadPolicy> | null {
  try {
    return loadPolicy({ policyDir, legacyDir: join(root, 'legacy'), overrides: new Map([[file, text]]) });
  } catch (e) {
    if (e instanceof PolicySyntaxError && e.message.startsWith(`${e.file ?? '<unknown>'}:`)) return null;
    if (e instanceof AccessDenied) return null;
    throw e;
  }
}

t.test("policy text: loads or is refused with the engine's own errors", async (t) => {
  await holds(
    t,
    'no other exception',
    fc.property(policyText, (text) => {
      load(text);
      return true;
    }),
    1500,
  );
  t.equal(load('admin.vm.List * work @adminvm allow target=dom0')?.rules.length, 1, 'a valid rule loads');
  t.equal(load('admin.vm.List * work'), null, 'a short rule is refused');
});

t.test('policy bytes: invalid UTF-8 is a PolicySyntaxError with a line', async (t) => {
  await holds(
    t,
    'decode or refuse',
    fc.property(fc.uint8Array({ maxLength: 200 }), (b) => {
      try {
        decodePolicyText(b, file);
        return true;
      } catch (e) {
        return e instanceof PolicySyntaxError && e.file === file;
      }
    }),
    1500,
  );
});

const sys = systemInfo();
const names = [
  ...Object.keys(sys.domains),
  '@default',
  '@adminvm',
  '@dispvm',
  '@dispvm:nope',
  'uuid:00000000-0000-0000-0000-000000000000',
  'nope',
  '',
  '@anyvm',
  '@tag:x',
  '..',
];
const request = fc.record({
  service: fc.oneof(fc.constantFrom('admin.vm.List', 'qubes.Filecopy', '', '*', 'a+b'), fc.string({ unit: 'binary-ascii', maxLength: 12 })),
  argument: fc.oneof(fc.constantFrom('', '+', '+arg', '+a+b', 'noplus'), fc.string({ unit: 'binary', maxLength: 12 })),
  source: fc.oneof(fc.constantFrom(...names), fc.string({ maxLength: 8 })),
  target: fc.oneof(fc.constantFrom(...names), fc.string({ maxLength: 8 })),
  requestedSource: fc.option(fc.constantFrom(...names), { nil: null }),
});

t.test('evaluation: any loaded policy answers any request with a resolution', async (t) => {
  let loadedCount = 0;
  await holds(
    t,
    'never throws; result is one of allow/ask/deny/error',
    fc.property(policyText, fc.array(request, { minLength: 1, maxLength: 5 }), (text, reqs) => {
      const loaded = load(text);
      if (!loaded) return true;
      loadedCount++;
      const policy = new PolicyEvaluator(loaded.rules, loaded.warnings);
      return reqs.every((r) => ['allow', 'ask', 'deny', 'error'].includes(policy.evaluate(r, sys).result));
    }),
    800,
  );
  t.ok(loadedCount >= (runs(800).numRuns ?? 800) * 0.05, `enough generated policies loaded to mean something (${loadedCount})`);
});

t.test('policy daemon requests: parsed or refused, never thrown', async (t) => {
  const keyLine = fc.oneof(
    fc
      .tuple(
        fc.constantFrom(
          'source',
          'intended_target',
          'service_and_arg',
          'assume_yes_for_ask',
          'just_evaluate',
          'requested_source',
          'domain_id',
          'process_ident',
          'x',
          '',
        ),
        fc.string({ unit: 'binary', maxLength: 12 }),
      )
      .map(([k, v]) => `${k}=${v}`),
    fc.string({ unit: 'binary', maxLength: 20 }),
  );
  await holds(
    t,
    'a map with the required keys, or null after one complaint',
    fc.property(fc.array(keyLine, { maxLength: 6 }), fc.boolean(), (lines, latin) => {
      const raw = Buffer.from(lines.join('\n') + '\n\n', latin ? 'latin1' : 'utf8');
      const complaints: string[] = [];
      const m = parseDaemonRequest(raw, (msg) => complaints.push(msg));
      if (m === null) return complaints.length === 1;
      return complaints.length === 0 && ['source', 'intended_target', 'service_and_arg'].every((k) => m.has(k));
    }),
    1500,
  );
});
