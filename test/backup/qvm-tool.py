#!/usr/bin/env python3
# Runs a real Qubes client tool like shared/conformance/tools/qvm.py does,
# and also points qubesadmin's QREXEC_SERVICES_DIR at $QREXEC_SERVICES_DIR:
# in dom0 the client runs streaming methods (admin.vm.volume.Import...) as
# /etc/qubes-rpc/<method> itself, which in our installation is the handler
# program. usage: qvm-tool.py TOOL [ARGS...]
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
sys.exit(qvm.main())
