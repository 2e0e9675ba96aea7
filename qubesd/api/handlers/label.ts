// admin.label.*: the system's labels.
import type { Handlers } from '../call.js';
import { ProtocolError, QubesException, QubesLabelInUseError, pyRepr } from '../../errors.js';
import { Label, MAX_DEFAULT_LABEL, validateLabelName, validateLabelValue } from '../../model/labels.js';

export const handlers: Handlers = {
  'admin.label.List': (call) =>
    call.app.labels
      .all()
      .map((l) => l.name + '\n')
      .join(''),
  'admin.label.Get': (call) => {
    validateLabelName(call.arg);
    const label = call.app.labels.get(call.arg);
    // Qubes keeps a label created by this daemon as raw bytes and fails to
    // answer with it until the store is loaded again; we answer with an error.
    if (label.createdByApi) throw QubesException(`colour of label ${pyRepr(label.name)} is not available until qubesd restarts`);
    return label.color;
  },
  'admin.label.Index': (call) => {
    validateLabelName(call.arg);
    return String(call.app.labels.get(call.arg).index);
  },
  'admin.label.Create': (call) => {
    validateLabelName(call.arg, true);
    validateLabelValue(call.payload);
    let exists = true;
    try {
      call.app.labels.get(call.arg);
    } catch {
      exists = false;
    }
    if (exists) throw QubesLabelInUseError(pyRepr(call.arg));
    call.app.labels.add(new Label(call.app.labels.maxIndex() + 1, call.payload.toString('latin1'), call.arg, true));
    call.app.markGlobalsDirty();
  },
  'admin.label.Remove': (call) => {
    validateLabelName(call.arg);
    const label = call.app.labels.get(call.arg);
    if (label.index <= MAX_DEFAULT_LABEL) throw ProtocolError('Can only remove custom labels');
    for (const vm of call.app.allVms()) {
      // Qubes fails on a qube without a label (possible after a label reset)
      if (!vm.label) throw QubesException(`qube ${pyRepr(vm.name)} has no label`);
      if (vm.label.name === label.name) throw QubesLabelInUseError(label.repr());
    }
    call.app.labels.remove(label);
    call.app.markGlobalsDirty();
  },
};
