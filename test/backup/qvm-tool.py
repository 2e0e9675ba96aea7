#!/usr/bin/env python3
# Runs a real Qubes client tool against our sockets, set up like
# shared/conformance/tools/qvm.py ($QVM_PY) does, with two more settings a
# dom0 client has fixed paths for:
# - QREXEC_SERVICES_DIR: in dom0 the client runs streaming methods
#   (admin.vm.volume.Import...) as /etc/qubes-rpc/<method> itself; in our
#   installation that is the handler program;
# - QVM_BACKUP_PROFILE_DIR: where qvm-backup writes its one-off profile
#   (/etc/qubes/backup on a real dom0).
# usage: qvm-tool.py TOOL [ARGS...]
import importlib
import importlib.util
import os
import sys

spec = importlib.util.spec_from_file_location('qvm', os.environ['QVM_PY'])
qvm = importlib.util.module_from_spec(spec)
spec.loader.exec_module(qvm)
qvm.setup()
import qubesadmin.config  # noqa: E402

if os.environ.get('QREXEC_SERVICES_DIR'):
    qubesadmin.config.QREXEC_SERVICES_DIR = os.environ['QREXEC_SERVICES_DIR']
tool = sys.argv[1]
sys.argv = [tool] + sys.argv[2:]
mod = importlib.import_module('qubesadmin.tools.' + tool.replace('-', '_'))
if hasattr(mod, 'backup_profile_dir') and os.environ.get('QVM_BACKUP_PROFILE_DIR'):
    mod.backup_profile_dir = os.environ['QVM_BACKUP_PROFILE_DIR']
sys.exit(mod.main())
