// Synthetic stores shaped like the conformance fixture (written by the real
// qubesd): dom0, templates and AppVMs with the same properties, features,
// tags, devices and volume-config, for tests and the store benchmark.
import { randomUUID } from 'node:crypto';
import type { DomainDoc, QubesDoc } from '../../../qubesd/store/document.js';
import { QubesApp } from '../../../qubesd/model/app.js';

const LABELS = ['red', 'orange', 'yellow', 'green', 'gray', 'blue', 'purple', 'black'];
const COLORS = ['0xcc0000', '0xf57900', '0xedd400', '0x73d216', '0x555555', '0x3465a4', '0x75507b', '0x000000'];

export function syntheticAppVm(qid: number, name = `vm-${qid}`): DomainDoc {
  const vol = (v: string, extra: Array<[string, string]>): Array<[string, string]> => [
    ['name', v],
    ['pool', 'varlibqubes'],
    ['vid', `appvms/${name}/${v}`],
    ...extra,
  ];
  return {
    id: `domain-${qid}`,
    klass: 'AppVM',
    properties: [
      ['label', LABELS[qid % LABELS.length]!],
      ['name', name],
      ['qid', String(qid)],
      ['uuid', randomUUID()],
      ['template', 'fedora-41'],
    ],
    features: [
      ['qrexec', '1'],
      ['gui', '1'],
      ['os', 'Linux'],
    ],
    tags: ['guivm-dom0', 'audiovm-dom0', 'created-by-dom0'],
    devices: ['<devices class="pci"/>'],
    volumeConfig: [
      {
        attrs: vol('root', [
          ['revisions_to_keep', '0'],
          ['rw', 'True'],
          ['save_on_stop', 'False'],
          ['snap_on_start', 'True'],
          ['size', '10737418240'],
          ['source', 'vm-templates/fedora-41/root'],
        ]),
      },
      {
        attrs: vol('private', [
          ['revisions_to_keep', '1'],
          ['rw', 'True'],
          ['save_on_stop', 'True'],
          ['snap_on_start', 'False'],
          ['size', '2147483648'],
        ]),
      },
      {
        attrs: vol('volatile', [
          ['revisions_to_keep', '0'],
          ['rw', 'True'],
          ['save_on_stop', 'False'],
          ['snap_on_start', 'False'],
          ['size', '10737418240'],
        ]),
      },
      {
        attrs: [
          ['name', 'kernel'],
          ['pool', 'linux-kernel'],
          ['vid', '6.6.33-1.fc37'],
          ['revisions_to_keep', '0'],
          ['rw', 'False'],
          ['save_on_stop', 'False'],
          ['snap_on_start', 'False'],
        ],
      },
    ],
    extra: [],
  };
}

/** dom0, a template and `n - 2` AppVMs (n >= 2). */
export function syntheticStore(n: number, baseDir = '/var/lib/qubes'): QubesDoc {
  const template = syntheticAppVm(1, 'fedora-41');
  template.klass = 'TemplateVM';
  template.properties = template.properties.filter(([k]) => k !== 'template');
  const domains: DomainDoc[] = [
    { id: 'domain-0', klass: 'AdminVM', properties: [['label', 'black']], features: [], tags: [], devices: [], volumeConfig: [], extra: [] },
    template,
  ];
  for (let q = 2; q < n; q++) domains.push(syntheticAppVm(q));
  return {
    labels: LABELS.map((name, i) => ({ id: `label-${i + 1}`, color: COLORS[i]!, name })),
    pools: QubesApp.freshDoc({ baseDir }).pools,
    properties: [
      ['default_template', 'fedora-41'],
      ['default_pool_kernel', 'linux-kernel'],
    ],
    domains,
    extra: [],
  };
}
