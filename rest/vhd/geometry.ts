// VHD's fixed numbers: the CHS geometry a footer must carry (the algorithm of
// Microsoft's VHD specification, appendix "CHS calculation"), its timestamp
// epoch (2000-01-01 00:00:00 UTC) and its checksum (one's complement of the
// byte sum, with the checksum field counted as zeros).

export const SECTOR = 512;

export interface Geometry {
  cylinders: number;
  heads: number;
  sectorsPerTrack: number;
}

export function chsGeometry(size: number): Geometry {
  let totalSectors = Math.floor(size / SECTOR);
  if (totalSectors > 65535 * 16 * 255) totalSectors = 65535 * 16 * 255;
  let sectorsPerTrack: number, heads: number, cylinderTimesHeads: number;
  if (totalSectors >= 65535 * 16 * 63) {
    sectorsPerTrack = 255;
    heads = 16;
    cylinderTimesHeads = Math.floor(totalSectors / sectorsPerTrack);
  } else {
    sectorsPerTrack = 17;
    cylinderTimesHeads = Math.floor(totalSectors / sectorsPerTrack);
    heads = Math.max(4, Math.floor((cylinderTimesHeads + 1023) / 1024));
    if (cylinderTimesHeads >= heads * 1024 || heads > 16) {
      sectorsPerTrack = 31;
      heads = 16;
      cylinderTimesHeads = Math.floor(totalSectors / sectorsPerTrack);
    }
    if (cylinderTimesHeads >= heads * 1024) {
      sectorsPerTrack = 63;
      heads = 16;
      cylinderTimesHeads = Math.floor(totalSectors / sectorsPerTrack);
    }
  }
  return { cylinders: Math.floor(cylinderTimesHeads / heads), heads, sectorsPerTrack };
}

/** Seconds since 2000-01-01 00:00:00 UTC, VHD's epoch. */
const EPOCH_2000 = Date.UTC(2000, 0, 1) / 1000;

export function vhdTimestamp(date: Date): number {
  return Math.max(0, Math.floor(date.getTime() / 1000) - EPOCH_2000) >>> 0;
}

/** The checksum of a footer or header with its checksum field at `at`. */
export function vhdChecksum(buf: Buffer, at: number): number {
  let sum = 0;
  for (let i = 0; i < buf.length; i++) if (i < at || i >= at + 4) sum += buf[i]!;
  return ~sum >>> 0;
}
