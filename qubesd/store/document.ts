// The store's view of qubes.xml: a plain, ordered document that the store
// loads, journals and saves, and that the model is built from. Keeping it
// separate from the model lets the store stay a dumb, careful byte keeper
// (atomic writes, journal, lock) and the model stay free of I/O.
//
// Order matters everywhere (Qubes writes properties, features, tags and
// volumes in a stable order and clients list them in that order), hence
// arrays of pairs rather than records. Unknown elements are preserved as raw
// XML so that a qubes.xml written by a newer Qubes survives a load/save.

export interface LabelDoc {
  /** XML id, e.g. "label-1"; the number is the label's index. */
  id: string;
  color: string; // "0xcc0000"
  name: string;
}

export interface PoolDoc {
  /** All attributes of <pool>, in document order (name and driver included). */
  attrs: Array<[string, string]>;
}

export interface VolumeConfigDoc {
  /** All attributes of <volume>, in document order (name, pool, vid, size, ...). */
  attrs: Array<[string, string]>;
}

export interface DomainDoc {
  /** XML id, e.g. "domain-7" (the qid) */
  id: string;
  /** class attribute: AdminVM, AppVM, TemplateVM, StandaloneVM, DispVM, RemoteVM */
  klass: string;
  /** <properties>: name -> text ('' for an explicit None, e.g. netvm set to none) */
  properties: Array<[string, string]>;
  features: Array<[string, string]>;
  tags: string[];
  /** <devices class="..."> elements, kept verbatim (serialized XML) */
  devices: string[];
  volumeConfig: VolumeConfigDoc[];
  /** any other child element of <domain>, verbatim */
  extra: string[];
}

export interface QubesDoc {
  labels: LabelDoc[];
  pools: PoolDoc[];
  /** global (app) properties */
  properties: Array<[string, string]>;
  domains: DomainDoc[];
  /** any other child element of <qubes>, verbatim */
  extra: string[];
}

/**
 * A unit of durable change, produced by the model after a mutating call and
 * handed to the store, which makes it durable before the reply is sent.
 * 'domain' replaces (or adds) the whole domain with that id;
 * 'domain-entries' changes entries of an existing domain (what a feature,
 * tag or property call changed, so that its record does not grow with the
 * rest of the domain); 'globals' replaces labels, pools and global
 * properties at once.
 */
export type Change =
  | { kind: 'domain'; doc: DomainDoc }
  | DomainEntriesChange
  | { kind: 'domain-removed'; id: string }
  | { kind: 'globals'; labels: LabelDoc[]; pools: PoolDoc[]; properties: Array<[string, string]>; extra: string[] };

/**
 * Entries of domain `id` changed; each field is absent when nothing of its
 * kind changed. Sets and additions are replayed in order; a deletion sends
 * the whole list instead, because replaying "delete, then set again" over
 * a qubes.xml that already holds the result would move the entry to the
 * end, and a journal may be replayed over such a snapshot (store.ts).
 */
export interface DomainEntriesChange {
  kind: 'domain-entries';
  id: string;
  /** the domain's whole <properties> list (a short list, kept in Qubes' order by the model) */
  properties?: Array<[string, string]>;
  /** the whole feature list, replacing the domain's (sent when a feature was deleted) */
  features?: Array<[string, string]>;
  /** features set, in order: in place when present, appended when new */
  setFeatures?: Array<[string, string]>;
  /** the whole tag list, replacing the domain's (sent when a tag was removed) */
  tags?: string[];
  /** tags added, in order (appended unless present) */
  addTags?: string[];
}
