// Just enough of qubes.xml to tell which qubes a backup holds: each
// <domain> with its class, name, and the backup-* features the backup
// writer sets. The XML has been authenticated before it gets here.
export interface BackedUpQube {
  name: string;
  klass: string;
  /** Directory of the qube's files in the archive, e.g. 'vm3/'. */
  path: string;
  /** Size announced by the backup (sum of the stored files' sizes). */
  size: number;
}

function unescape(s: string): string {
  return s.replace(/&(lt|gt|amp|quot|apos|#\d+|#x[0-9a-fA-F]+);/g, (_m, e: string) => {
    switch (e) {
      case 'lt':
        return '<';
      case 'gt':
        return '>';
      case 'amp':
        return '&';
      case 'quot':
        return '"';
      case 'apos':
        return "'";
      default:
        return String.fromCodePoint(e[1] === 'x' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10));
    }
  });
}

function named(body: string, element: string, name: string): string | undefined {
  const re = new RegExp(`<${element}\\s+name=(["'])${name}\\1\\s*(?:/>|>([^<]*)</${element}>)`);
  const m = re.exec(body);
  return m ? unescape(m[2] ?? '') : undefined;
}

/** Qubes whose backup-content feature is set, in document order. */
export function backedUpQubes(xml: string): BackedUpQube[] {
  const out: BackedUpQube[] = [];
  for (const m of xml.matchAll(/<domain\b([^>]*)>([\s\S]*?)<\/domain>/g)) {
    const attrs = m[1]!;
    const body = m[2]!;
    const content = named(body, 'feature', 'backup-content');
    if (content !== '1' && content !== 'True') continue;
    const klass = /\bclass=(["'])([^"']*)\1/.exec(attrs)?.[2] ?? '';
    out.push({
      // dom0 carries no name property in qubes.xml.
      name: klass === 'AdminVM' ? 'dom0' : (named(body, 'property', 'name') ?? ''),
      klass,
      path: named(body, 'feature', 'backup-path') ?? '',
      size: Number(named(body, 'feature', 'backup-size') ?? 0),
    });
  }
  return out;
}
