// The handler registry: every family module's handlers, merged. Each key is
// a method name from the method table; the dispatcher refuses any table
// entry without a handler here as "no such method".
import type { Handlers } from '../call.js';
import { handlers as vm } from './vm.js';
import { handlers as property } from './property.js';
import { handlers as feature } from './feature.js';
import { handlers as tag } from './tag.js';
import { handlers as label } from './label.js';
import { handlers as notes } from './notes.js';
import { handlers as events } from './events.js';
import { handlers as internal } from './internal.js';
import { handlers as pool } from './pool.js';
import { handlers as volume } from './volume.js';
import { handlers as lifecycle } from './lifecycle.js';
import { handlers as firewall } from './firewall.js';
import { handlers as devices } from './devices.js';
import { handlers as backup } from './backup.js';

export const families: Readonly<Record<string, Handlers>> = {
  vm,
  property,
  feature,
  tag,
  label,
  notes,
  events,
  internal,
  pool,
  volume,
  lifecycle,
  firewall,
  devices,
  backup,
};

function merge(all: Readonly<Record<string, Handlers>>): Handlers {
  const out: Record<string, Handlers[string]> = {};
  for (const [family, hs] of Object.entries(all)) {
    for (const [name, h] of Object.entries(hs)) {
      if (out[name]) throw new Error(`method ${name} has handlers in two families (${family})`);
      out[name] = h;
    }
  }
  return Object.freeze(out);
}

export const HANDLERS: Handlers = merge(families);
