// A qube's power state, named as Qubes names it (what admin.vm.CurrentState
// and admin.vm.List report). The model keeps it, the hypervisor backends
// report it, the life cycle controller moves it: one type for all of them.
export type PowerState = 'Halted' | 'Transient' | 'Running' | 'Paused' | 'Suspended' | 'Halting' | 'Dying' | 'Crashed' | 'NA';
