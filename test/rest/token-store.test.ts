// The gateway's token store on the real filesystem, with its inotify watch:
// a token created or revoked by another writer (as `qubes-rest token` is) is
// seen, a token that matched once is refused once its record changes, and a
// watched directory that is moved away or replaced leaves the store stating
// the file on every check instead of trusting a watch that sees no more.
import t from 'tap';
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TokenStore } from '../../rest/tokens.js';
import { eventually } from '../helpers/daemon-session.js';

const root = mkdtempSync(join(tmpdir(), 'token-store-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));
mkdirSync(join(root, 'etc'));
const file = join(root, 'etc', 'rest-tokens.json');

const gateway = new TokenStore(file);
gateway.watchForChanges();
t.teardown(() => gateway.unwatch());
/** the other writer: its own store object, as the CLI's process has */
const cli = new TokenStore(file);

t.test('created, used, revoked by another writer', async (t) => {
  t.equal(gateway.verify('nothing-yet'), null, 'no file: nobody');
  const { token, record } = cli.create('work', { description: 'a' });
  await eventually(() => gateway.verify(token) !== null, 'the new token accepted');
  t.equal(gateway.verify(token)!.identity, 'work');
  t.equal(gateway.verify(token)!.id, record.id, 'the same record again (from the map)');
  t.equal(gateway.verify(`${token}x`), null, 'a longer token is another token');
  t.equal(gateway.verify(token.slice(0, -1)), null, 'a shorter one too');
  t.ok(cli.revoke(record.id));
  await eventually(() => gateway.verify(token) === null, 'the revoked token refused');
});

t.test('a record rewritten in place refuses the token it matched', async () => {
  const { token, record } = cli.create('dom0');
  await eventually(() => gateway.verify(token) !== null, 'accepted');
  // the same id, another hash: a token rotated by hand
  writeFileSync(file, JSON.stringify({ version: 1, tokens: [{ ...record, hash: 'cd'.repeat(32) }] }));
  await eventually(() => gateway.verify(token) === null, 'refused after the edit');
});

t.test('the watched directory moved away: the store stats the file from then on', async (t) => {
  const { token } = cli.create('dom0');
  await eventually(() => gateway.verify(token) !== null, 'accepted');
  renameSync(join(root, 'etc'), join(root, 'etc.old'));
  await eventually(() => gateway.verify(token) === null, 'no file where it was: refused');
  mkdirSync(join(root, 'etc'));
  const fresh = cli.create('mgmt').token;
  // no watch on the new directory: seen at once, by a stat
  t.equal(gateway.verify(fresh)?.identity, 'mgmt', 'a token in the new directory, at the first check');
  t.equal(gateway.verify(token), null, 'the old file is not read');
});
