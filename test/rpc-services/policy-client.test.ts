// Reading the policy daemon's answers as strictly as qrexec does.
import t from 'tap';
import { parsePolicyAnswer } from '../../lib/policy-client.js';

t.test('allow and deny answers', async (t) => {
  t.same(parsePolicyAnswer('user=DEFAULT\nresult=allow\ntarget=dom0\nautostart=True\nrequested_target=@adminvm\n'), {
    result: 'allow',
    user: 'DEFAULT',
    target: 'dom0',
    autostart: true,
    requestedTarget: '@adminvm',
  });
  t.same(parsePolicyAnswer('result=deny'), { result: 'deny' });
  const full = parsePolicyAnswer('user=DEFAULT\nresult=allow\ntarget=work\ntarget_uuid=uuid:x\nautostart=False\nrequested_target=work\nunknown=ignored');
  t.equal(full.result === 'allow' && full.targetUuid, 'uuid:x');
});

t.test('malformed answers are errors, never an allow', async (t) => {
  for (const bad of [
    '',
    'result=maybe',
    'result=allow',
    'result=deny\ntarget=dom0',
    'result=deny\nresult=deny',
    'user=DEFAULT\nresult=allow\ntarget=dom0\nautostart=yes\nrequested_target=dom0',
    'noequals',
    'result=deny\0',
  ]) {
    t.throws(() => parsePolicyAnswer(bad), JSON.stringify(bad));
  }
});
