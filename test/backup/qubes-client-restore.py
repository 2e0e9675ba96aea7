#!/usr/bin/env python3
# Drives the data path of the real Qubes client's restore code
# (qubesadmin.backup.restore.BackupRestore, from the checkout named by
# $QUBES_CORE_ADMIN_CLIENT) over an archive: header verification, qubes.xml
# parsing, and extraction of every backed-up qube's files, which are written
# under OUTDIR/<backup-path><file>. Creating qubes (Admin API calls) is left
# out: that part needs a running qubesd. Prints a JSON summary.
# usage: qubes-client-restore.py ARCHIVE PASSPHRASE OUTDIR
import json
import os
import sys

sys.path.insert(0, os.environ['QUBES_CORE_ADMIN_CLIENT'])
from qubesadmin.backup.restore import BackupRestore  # noqa: E402

archive, passphrase, outdir = sys.argv[1:4]
os.makedirs(os.path.join(outdir, 'tmp'), exist_ok=True)
restore = BackupRestore(None, archive, None, passphrase, tmpdir=os.path.join(outdir, 'tmp'))
qubes = {name: vm for name, vm in restore.backup_app.domains.items() if vm.included_in_backup}


def saver(path):
    def save(stream, *, file_size=None):
        target = os.path.join(outdir, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, 'wb') as out:
            while True:
                buf = stream.read(1 << 20)
                if not buf:
                    break
                out.write(buf)
        with open(target + '.size', 'w') as f:
            f.write(str(file_size))
    return save


names = json.loads(os.environ.get('FILES', '[]'))
handlers = {path: saver(path) for path in names}
restore._restore_vm_data(
    vms_dirs=[vm.backup_path for vm in qubes.values()],
    vms_size=sum(int(vm.size) for vm in qubes.values()),
    handlers=handlers)
print(json.dumps({
    'version': restore.header_data.version,
    'compressed': restore.header_data.compressed,
    'qubes': {name: vm.backup_path for name, vm in qubes.items()},
}))
