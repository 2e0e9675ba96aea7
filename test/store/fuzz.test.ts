// Damaged input never crashes the reader: every mutation of a real qubes.xml
// either loads or is refused with XmlError / QubesXmlError.
import { readFileSync } from 'node:fs';
import t from 'tap';
import { parseQubesXml, QubesXmlError, serializeQubesXml } from '../../qubesd/store/qubes-xml.js';
import { XmlError } from '../../qubesd/store/xml.js';
import { FIXTURE } from './helpers/tmp.js';

function prng(seed: number): () => number {
  return () => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed / 2 ** 32;
  };
}

t.test('mutated qubes.xml: loads or is refused cleanly', async (t) => {
  const src = readFileSync(FIXTURE);
  const rnd = prng(42);
  const interesting = Buffer.from('<>&;/="\'!?-[]# \n\u00e9');
  let refused = 0,
    loaded = 0,
    other = 0;
  for (let i = 0; i < 3000; i++) {
    const b = Buffer.from(src);
    const edits = 1 + Math.floor(rnd() * 3);
    for (let e = 0; e < edits; e++) {
      const at = Math.floor(rnd() * b.length);
      b[at] = rnd() < 0.5 ? interesting[Math.floor(rnd() * interesting.length)]! : Math.floor(rnd() * 256);
    }
    const input = rnd() < 0.2 ? b.subarray(0, Math.floor(rnd() * b.length)) : b;
    try {
      const doc = parseQubesXml(input);
      // whatever loads must also be writable and load back the same
      const again = parseQubesXml(serializeQubesXml(doc));
      if (JSON.stringify(again) !== JSON.stringify(doc)) other++;
      loaded++;
    } catch (e) {
      if (e instanceof XmlError || e instanceof QubesXmlError) refused++;
      else {
        other++;
        t.comment(String(e));
      }
    }
  }
  t.equal(other, 0, `${loaded} loaded, ${refused} refused, none crashed or changed on a round trip`);
  t.ok(refused > 0 && loaded > 0);
});
