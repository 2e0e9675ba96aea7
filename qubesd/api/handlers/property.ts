// admin.property.* (global properties) and admin.vm.property.* (a qube's):
// one implementation over the model's property engine.
import type { Call, Handler, Handlers } from '../call.js';
import { lookup, resetProperty, setFromApi, type Holder } from '../../model/properties.js';
import { serializeAll, serializeDefault, serializeProperty } from '../format/property.js';

type Op = (h: Holder, call: Call) => string | null | void;

const ops: Record<string, Op> = {
  List: (h) => h.table.list.map((d) => d.name + '\n').join(''),
  Get: (h, call) => serializeProperty(h, lookup(h, call.arg)),
  GetAll: (h) => serializeAll(h),
  GetDefault: (h, call) => serializeDefault(h, lookup(h, call.arg)),
  Help: (h, call) => lookup(h, call.arg).help,
  Set: (h, call) => {
    setFromApi(h, call.arg, call.payload);
  },
  Reset: (h, call) => {
    resetProperty(h, lookup(h, call.arg));
  },
};

function build(): Handlers {
  const out: Record<string, Handler> = {};
  for (const [name, op] of Object.entries(ops)) {
    out[`admin.property.${name}`] = (call) => op(call.app, call);
    out[`admin.vm.property.${name}`] = (call) => op(call.dest, call);
  }
  return out;
}

export const handlers: Handlers = build();
