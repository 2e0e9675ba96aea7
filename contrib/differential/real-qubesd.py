#!/usr/bin/python3
"""Run the real Qubes qubesd (qubes-core-admin, from a checkout) on a store
outside Qubes OS, as an oracle for comparing answers with ours.

  real-qubesd.py STORE BASE_DIR SOCKET [POLICY_DIR]

Environment: QUBES_CORE_ADMIN (a qubes-core-admin checkout, with an
egg-info made by `setup.py egg_info --egg-base $QUBES_CORE_ADMIN_EGG`),
QUBES_CORE_ADMIN_EGG, QUBES_CORE_QREXEC (a qubes-core-qrexec checkout).
Nothing of them is copied here; see README.md for the setup.

What differs from a Qubes dom0, and how it is made to answer as one:
  * no Xen: libvirt's test driver (test:///default) stands in; every qube
    is unknown to it and so halted; dom0's libvirt domain is the driver's
    own "test" domain; Qubes is told it runs on Xen so that maxmem
    defaults are computed as on a real system;
  * the host's memory and CPUs are the values the conformance recordings
    were made with (maxmem 18014398509481983 MiB, 42 CPUs), dom0's maxmem
    4096 MiB (the Xen command line's default);
  * no QubesDB: a stand-in module that stores nothing (stubs/qubesdb.py);
  * backup profiles (/etc/qubes/backup) are read from backup/ beside STORE;
  * the base directory (/var/lib/qubes) is BASE_DIR, and the qrexec policy
    that filters what management qubes see is read from POLICY_DIR alone
    (default: an empty one) instead of /run/qubes/policy.d and
    /etc/qubes/policy.d.
"""
import asyncio
import os
import pathlib
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    store, base, sock = sys.argv[1:4]
    policy_dir = sys.argv[4] if len(sys.argv) > 4 else tempfile.mkdtemp(prefix="real-qubesd-policy-")
    for var in ("QUBES_CORE_QREXEC", "QUBES_CORE_ADMIN", "QUBES_CORE_ADMIN_EGG"):
        if not os.environ.get(var):
            sys.exit(f"real-qubesd.py: set {var} (see README.md)")
        sys.path.insert(0, os.environ[var])
    sys.path.insert(0, os.path.join(HERE, "stubs"))

    import qrexec.policy.utils

    qrexec.policy.utils.PolicyCache.__init__.__defaults__ = ((pathlib.Path(policy_dir),), True, False)
    import qubes.config

    qubes.config.qubes_base_dir = base
    qubes.config.backup_profile_dir = os.path.join(os.path.dirname(os.path.abspath(store)), "backup")
    qubes.config.defaults["pool_configs"]["varlibqubes"]["dir_path"] = base
    qubes.config.defaults["libvirt_uri"] = "test:///default"
    import qubes
    import qubes.api
    import qubes.api.admin
    import qubes.app
    import qubes.vm.adminvm

    qubes.app.QubesHost.memory_total = property(lambda self: 18014398509481983 * 1024)
    qubes.app.QubesHost.no_cpus = property(lambda self: 42)
    qubes.app.VMMConnection.is_xen = property(lambda self: True)
    qubes.vm.adminvm.AdminVM.libvirt_domain = property(
        lambda self: self.app.vmm.libvirt_conn.lookupByName("test"))
    maxmem = qubes.vm.adminvm.AdminVM.maxmem
    maxmem._default = maxmem._default_function = lambda self: 4096

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    app = qubes.Qubes(store, offline_mode=False)
    qubes.api.admin.QubesAdminAPI.SOCKNAME = sock
    loop.run_until_complete(qubes.api.create_servers(
        qubes.api.admin.QubesAdminAPI, app=app, debug=False, force=True))
    print("ready", flush=True)
    loop.run_forever()


if __name__ == "__main__":
    main()
