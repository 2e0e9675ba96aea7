// A qubes.xml edited by hand (or written by another tool) may spell an empty
// element over two lines; that is still a loadable Qubes store.
import t from 'tap';
import { parseQubesXml } from '../../qubesd/store/qubes-xml.js';

const doc = `<?xml version='1.0' encoding='UTF-8'?>
<qubes>
  <labels>
    <label id="label-1" color="0xcc0000">red</label>
  </labels>
  <pools>
  </pools>
  <properties>
  </properties>
  <domains>
    <domain id="domain-0" class="AdminVM">
      <properties>
        <property name="label">red</property>
      </properties>
      <features>
      </features>
      <tags>
      </tags>
    </domain>
    <domain id="domain-1" class="AppVM">
      <properties>
        <property name="label">red</property>
        <property name="name">a</property>
        <property name="qid">1</property>
      </properties>
      <features/>
      <tags/>
      <volume-config>
      </volume-config>
    </domain>
  </domains>
</qubes>
`;

t.test('blank text inside container elements is ignored', async (t) => {
  const d = parseQubesXml(doc);
  t.equal(d.domains.length, 2);
  t.same(d.domains[1]!.volumeConfig, []);
  t.same(d.pools, []);
});

t.test('other text inside container elements is still refused', async (t) => {
  t.throws(() => parseQubesXml(doc.replace('<volume-config>\n      </volume-config>', '<volume-config>oops</volume-config>')), /unexpected text "oops"/);
});
