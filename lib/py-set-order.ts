// The order in which CPython iterates a set built by adding items one by one,
// for items whose hash is a small non-negative integer (a qube's qid: Qubes'
// BaseVM.__hash__). Where Qubes shows a set to its user in iteration order
// (the qubes of a backup profile's include list, in its summary and its
// archive), this gives the same order. It follows CPython's set_add_entry
// (linear probing over up to LINEAR_PROBES slots, then a perturbed jump) and
// set_table_resize (grown to the smallest power of two above four times the
// number used once the table is three fifths full, old slots reinserted in
// table order); Python's hash of an int below 2**61 - 1 is the int itself.

const MIN_SIZE = 8;
const LINEAR_PROBES = 9;
const PERTURB_SHIFT = 5;

/** `items` (in the order they were added, duplicates by hash ignored) in CPython's set order. */
export function pySetOrder<T>(items: readonly T[], hash: (item: T) => number): T[] {
  let table: Array<T | undefined> = new Array<T | undefined>(MIN_SIZE);
  let hashes: number[] = new Array<number>(MIN_SIZE).fill(-1);
  let fill = 0;

  const slotFor = (tbl: Array<T | undefined>, hs: number[], h: number, clean: boolean): number => {
    const mask = tbl.length - 1;
    let i = h & mask;
    let perturb = h;
    for (;;) {
      let probes = i + LINEAR_PROBES <= mask ? LINEAR_PROBES : 0;
      let j = i;
      for (;;) {
        if (tbl[j] === undefined) return j;
        if (!clean && hs[j] === h) return -1; // already there
        if (probes-- === 0) break;
        j++;
      }
      perturb = Math.floor(perturb / 2 ** PERTURB_SHIFT);
      i = (i * 5 + 1 + perturb) & mask;
    }
  };

  for (const item of items) {
    const h = hash(item);
    if (!Number.isSafeInteger(h) || h < 0 || h >= 2 ** 30) throw new RangeError(`pySetOrder: hash ${h} out of range`);
    const at = slotFor(table, hashes, h, false);
    if (at < 0) continue;
    table[at] = item;
    hashes[at] = h;
    fill++;
    if (fill * 5 >= (table.length - 1) * 3) {
      let size = MIN_SIZE;
      while (size <= fill * 4) size *= 2;
      const next: Array<T | undefined> = new Array<T | undefined>(size);
      const nextHashes = new Array<number>(size).fill(-1);
      for (let k = 0; k < table.length; k++) {
        if (table[k] === undefined) continue;
        const s = slotFor(next, nextHashes, hashes[k]!, true);
        next[s] = table[k];
        nextHashes[s] = hashes[k]!;
      }
      table = next;
      hashes = nextHashes;
    }
  }
  return table.filter((x): x is T => x !== undefined);
}
