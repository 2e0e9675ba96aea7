// admin.vm.tag.*: a qube's tags. created-by-<qube> tags record who created a
// qube and only dom0 may change them.
import type { Call, Handlers } from '../call.js';
import { PermissionDenied, QubesInvalidTagError } from '../../errors.js';

const TAG = /^[a-zA-Z0-9_-]+$/;

function validateTag(tag: string): void {
  if (!tag) throw QubesInvalidTagError('tag cannot be empty');
  if (!TAG.test(tag)) throw QubesInvalidTagError('disallowed characters');
}

function permitChange(call: Call): void {
  if (call.arg.startsWith('created-by-') && call.source.klass !== 'AdminVM') {
    throw PermissionDenied('changing this tag is prohibited by qubes.ext.admin.AdminExtension');
  }
}

export const handlers: Handlers = {
  'admin.vm.tag.List': (call) =>
    [...call.dest.tags]
      .sort()
      .map((t) => t + '\n')
      .join(''),
  'admin.vm.tag.Get': (call) => {
    validateTag(call.arg);
    return call.dest.tags.has(call.arg) ? '1' : '0';
  },
  'admin.vm.tag.Set': (call) => {
    validateTag(call.arg);
    permitChange(call);
    call.dest.addTag(call.arg);
  },
  'admin.vm.tag.Remove': (call) => {
    validateTag(call.arg);
    permitChange(call);
    call.dest.removeTag(call.arg);
  },
};
