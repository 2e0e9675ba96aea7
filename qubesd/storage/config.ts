// A qube's <volume-config> entries, parsed, and written back in Qubes' own
// attribute order. Qubes' per-class defaults for new qubes live here too.
import type { VolumeConfigDoc } from '../store/document.js';

export interface VolumeConf {
  name: string;
  pool?: string;
  vid?: string;
  /** bytes; 0 when unknown (kernel volumes) */
  size: number;
  rw: boolean;
  saveOnStop: boolean;
  snapOnStart: boolean;
  revisionsToKeep?: number;
  /** vid of the volume this one snapshots (same pool) */
  source?: string;
  /** explicit ephemeral setting; undefined means the default */
  ephemeral?: boolean;
  /** attributes this version does not know, kept as they were */
  extra: Array<[string, string]>;
}

const KNOWN = new Set(['name', 'pool', 'vid', 'size', 'rw', 'save_on_stop', 'snap_on_start', 'revisions_to_keep', 'source', 'ephemeral']);

function parseBool(v: string | undefined): boolean {
  return v === 'True' || v === 'true' || v === '1' || v === 'on';
}

function parseInt10(v: string | undefined): number | undefined {
  if (v === undefined || !/^-?\d+$/.test(v)) return undefined;
  return Number(v);
}

export function parseVolumeConf(doc: VolumeConfigDoc): VolumeConf {
  const a = new Map(doc.attrs);
  const c: VolumeConf = {
    name: a.get('name') ?? '',
    size: parseInt10(a.get('size')) ?? 0,
    rw: parseBool(a.get('rw')),
    saveOnStop: parseBool(a.get('save_on_stop')),
    snapOnStart: parseBool(a.get('snap_on_start')),
    extra: doc.attrs.filter(([k]) => !KNOWN.has(k)),
  };
  if (a.has('pool')) c.pool = a.get('pool')!;
  if (a.has('vid')) c.vid = a.get('vid')!;
  const r = parseInt10(a.get('revisions_to_keep'));
  if (r !== undefined) c.revisionsToKeep = r;
  if (a.get('source')) c.source = a.get('source')!;
  if (a.has('ephemeral')) c.ephemeral = parseBool(a.get('ephemeral'));
  return c;
}

export const pyBool = (b: boolean): string => (b ? 'True' : 'False');

/** Qubes' Volume.config order: name pool vid revisions_to_keep rw save_on_stop snap_on_start [ephemeral] [size] [source]. */
export function volumeConfDoc(c: VolumeConf): VolumeConfigDoc {
  const attrs: Array<[string, string]> = [['name', c.name]];
  if (c.pool !== undefined) attrs.push(['pool', c.pool]);
  if (c.vid !== undefined) attrs.push(['vid', c.vid]);
  attrs.push(['revisions_to_keep', String(c.revisionsToKeep ?? 0)]);
  attrs.push(['rw', pyBool(c.rw)], ['save_on_stop', pyBool(c.saveOnStop)], ['snap_on_start', pyBool(c.snapOnStart)]);
  if (c.ephemeral !== undefined) attrs.push(['ephemeral', pyBool(c.ephemeral)]);
  if (c.size) attrs.push(['size', String(c.size)]);
  if (c.source) attrs.push(['source', c.source]);
  attrs.push(...c.extra);
  return { attrs };
}

export const PRIVATE_IMG_SIZE = 2 * 1024 ** 3;
export const ROOT_IMG_SIZE = 10 * 1024 ** 3;

/** The names CreateInPool accepts for `pool:<volume>=`. */
export const VOLUME_NAMES = ['root', 'private', 'volatile', 'kernel'] as const;

type Template = Pick<VolumeConf, 'name' | 'rw' | 'saveOnStop' | 'snapOnStart'> & { size?: number; fromSource?: true };

const vol = (name: string, snapOnStart: boolean, saveOnStop: boolean, rw: boolean, size?: number): Template => ({
  name,
  snapOnStart,
  saveOnStop,
  rw,
  ...(size ? { size } : {}),
  ...(snapOnStart ? { fromSource: true as const } : {}),
});

/** Qubes' volume layout of a new qube, per class (qubes/vm/*.py). */
export function defaultVolumes(klass: string): Template[] | null {
  const kernel = vol('kernel', false, false, false);
  switch (klass) {
    case 'TemplateVM':
    case 'StandaloneVM':
      return [
        vol('root', false, true, true, ROOT_IMG_SIZE),
        vol('private', false, true, true, PRIVATE_IMG_SIZE),
        vol('volatile', false, false, true, ROOT_IMG_SIZE),
        kernel,
      ];
    case 'AppVM':
      return [vol('root', true, false, true), vol('private', false, true, true, PRIVATE_IMG_SIZE), vol('volatile', false, false, true, ROOT_IMG_SIZE), kernel];
    case 'DispVM':
      return [vol('root', true, false, true), vol('private', true, false, true), vol('volatile', false, false, true, ROOT_IMG_SIZE + PRIVATE_IMG_SIZE), kernel];
    default:
      return null; // AdminVM, RemoteVM: no volumes
  }
}
