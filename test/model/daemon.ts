// Starts qubesd on a copy of the conformance fixture (or again on `dir`, a restart).
import { startDaemon, type Daemon } from '../helpers/qubesd.js';

export function startFixtureDaemon(dir?: string): Promise<Daemon> {
  return startDaemon(dir === undefined ? { args: ['--log', 'none'] } : { dir, args: ['--log', 'none'] });
}
