// admin.vm.feature.*: a qube's features, with Qubes' inheritance checks.
import type { Call, Handlers } from '../call.js';
import { PermissionDenied, ProtocolError, QubesFeatureNotFoundError } from '../../errors.js';

/** Features only qubesd itself may change (qubes.ext.admin PROHIBITED_FEATURES). */
const PROHIBITED = new Set(['deferred-netvm-original', 'preload-dispvm', 'preload-dispvm-completed', 'preload-dispvm-in-progress']);

const FEATURE_NAME = /^[a-zA-Z0-9_.-]+$/;
const FEATURE_VALUE = /^[\x20-\x7e]*$/;

function permitChange(call: Call): void {
  if (PROHIBITED.has(call.arg)) {
    throw PermissionDenied('changing this feature is prohibited by qubes.ext.admin.AdminExtension');
  }
}

export const handlers: Handlers = {
  'admin.vm.feature.List': (call) => [...call.dest.features.keys()].map((k) => k + '\n').join(''),
  'admin.vm.feature.Get': (call) => {
    const v = call.dest.features.get(call.arg);
    if (v === undefined) throw QubesFeatureNotFoundError(call.dest.name, call.arg);
    return v;
  },
  'admin.vm.feature.CheckWithTemplate': (call) => call.dest.checkFeatureOrThrow(call.arg, 'template', false),
  'admin.vm.feature.CheckWithNetvm': (call) => call.dest.checkFeatureOrThrow(call.arg, 'netvm', false),
  'admin.vm.feature.CheckWithAdminVM': (call) => call.dest.checkFeatureOrThrow(call.arg, null, true),
  'admin.vm.feature.CheckWithTemplateAndAdminVM': (call) => call.dest.checkFeatureOrThrow(call.arg, 'template', true),
  'admin.vm.feature.Remove': (call) => {
    permitChange(call);
    call.dest.deleteFeature(call.arg);
  },
  'admin.vm.feature.Set': (call) => {
    for (const b of call.payload) if (b > 0x7f) throw ProtocolError('Feature value contains non-ASCII characters');
    const value = call.payload.toString('latin1');
    if (!FEATURE_NAME.test(call.arg)) throw ProtocolError('feature name contains illegal characters');
    if (!FEATURE_VALUE.test(value)) throw ProtocolError(`${call.arg} value contains illegal characters`);
    permitChange(call);
    call.dest.setFeature(call.arg, value);
  },
};
