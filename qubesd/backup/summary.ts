// The text admin.backup.Info returns: the table Qubes prints before a
// backup (qube, type, size), the total, and the qubes left out. The caller
// passes only qubes the requester may see.
export interface SummaryRow {
  name: string;
  klass: string;
  /** Bytes the qube's files will take (before compression). */
  size: number;
  /** Templates and standalone qubes carry system data ("VM + Sys"). */
  updateable?: boolean;
  running?: boolean;
  /** running with a volume that keeps no snapshot: the backup will refuse it */
  snapshotsDisabled?: boolean;
}

/** Sizes the way Qubes shows them: bytes, then KiB/MiB/GiB with one decimal. */
export function sizeToHuman(size: number): string {
  const units: Array<[number, string]> = [
    [1024 ** 3, 'GiB'],
    [1024 ** 2, 'MiB'],
    [1024, 'KiB'],
  ];
  for (const [scale, unit] of units) if (size >= scale) return `${(Math.round((size / scale) * 10) / 10).toFixed(1)} ${unit}`;
  return String(size);
}

const WIDTHS = [16, 12, 12] as const;

function rule(): string {
  return WIDTHS.map((w) => '-'.repeat(w + 2) + '+').join('') + '\n';
}
function cells(values: string[]): string {
  return values.map((v, i) => `${v.padStart(WIDTHS[i]! + 1)} |`).join('');
}

/** Qubes' summary, byte for byte (nothing after the not-selected list). */
export function backupSummary(rows: SummaryRow[], notSelected: string[]): string {
  let out = rule() + cells(['VM', 'type', 'size']) + '\n' + rule();
  for (const r of rows) {
    const type = r.klass === 'TemplateVM' ? 'Template VM' : r.updateable ? 'VM + Sys' : 'VM';
    out += cells([r.name, type, sizeToHuman(r.size)]);
    if (r.running && r.snapshotsDisabled) out += ' <-- The VM is running and private volume snapshots are disabled. Backup will fail!';
    else if (r.running) out += ' <-- The VM is running, backup will contain its state from before its start!';
    out += '\n';
  }
  const total = rows.reduce((a, r) => a + r.size, 0);
  out += rule();
  out += `${'Total size:'.padStart(WIDTHS[0] + 1)} |${sizeToHuman(total).padStart(WIDTHS[1] + 1 + 2 + WIDTHS[2] + 1)} |\n`;
  out += rule();
  out += 'VMs not selected for backup:\n - ' + [...notSelected].sort().join('\n - ') + '\n';
  return out;
}
