#!/bin/sh
# Brings up a private libvirtd for the hypervisor tests and benchmarks, with no
# systemd and no polkit:
#   - installs Debian's libvirt and QEMU packages when they are missing;
#   - creates the user and groups QEMU runs as when no package did (a host
#     with libvirtd but without Debian's libvirt-daemon-system lacks the
#     libvirt-qemu user, and libvirtd refuses to start QEMU without it);
#   - stops a libvirtd/virtlogd left over from an earlier run of this script;
#   - when another libvirtd already holds /run/libvirt (a system one), runs
#     ours in a private mount namespace with its own /run/libvirt,
#     /var/lib/libvirt, /var/cache/libvirt, /var/log/libvirt and
#     /etc/libvirt/qemu (under DIR/state), so the two never share state;
#   - gives /dev/kvm the group udev would give it (when present);
#   - starts virtlogd, then libvirtd with its sockets in a private directory
#     (auth "none" on the UNIX socket), under a child-subreaper helper so that
#     QEMU processes libvirtd daemonizes are reaped at once (otherwise they
#     linger as zombies of PID 1 and every destroy waits for them);
#   - waits until the socket answers, then writes "$DIR/env" and prints it.
#
# Usage: .ci/libvirt.sh [DIR]        (DIR defaults to /tmp/qubes-libvirt)
#        QUBES_LIBVIRT_NO_INSTALL=1 .ci/libvirt.sh   (start only; fail if packages are missing)
#        .ci/libvirt.sh stop [DIR]
#
# Variables written to $DIR/env (and printed, so `eval "$(.ci/libvirt.sh)"`
# works); the tests also find the default DIR without them:
#   QUBES_TEST_LIBVIRT_SOCK  path of libvirtd's read-write socket
#   QUBES_TEST_LIBVIRT_URI   qemu+unix:///system?socket=<that path>
# Idempotent: running it again restarts the daemon cleanly.
set -eu

if [ "${1:-}" = stop ]; then ACTION=stop; shift; else ACTION=start; fi
DIR=${1:-/tmp/qubes-libvirt}
SOCK="$DIR/libvirt-sock"
URI="qemu+unix:///system?socket=$SOCK"

log() { echo "libvirt.sh: $*" >&2; }

# A process that exited but was not reaped yet (its parent is gone and PID 1
# of a container may reap late) counts as gone.
running() {
  kill -0 "$1" 2>/dev/null || return 1
  ! grep -q '^[0-9]* (.*) Z ' "/proc/$1/stat" 2>/dev/null
}

stop_pidfile() {
  f=$1
  [ -f "$f" ] || return 0
  pid=$(cat "$f" 2>/dev/null || true)
  if [ -n "$pid" ] && running "$pid"; then
    kill "$pid" 2>/dev/null || true
    i=0
    while running "$pid" && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

stop_all() {
  stop_pidfile "$DIR/reaper.pid"
  stop_pidfile "$DIR/libvirtd.pid"
  rm -f "$SOCK" "$DIR/libvirt-sock-ro" "$DIR/libvirt-admin-sock"
}

if [ $ACTION = stop ]; then stop_all; stop_pidfile "$DIR/virtlogd.pid"; exit 0; fi

# 1. Packages (only when something is missing: apt is slow).
need=""
command -v libvirtd >/dev/null 2>&1 || need="$need libvirt-daemon libvirt-daemon-system"
command -v virsh >/dev/null 2>&1 || need="$need libvirt-clients"
command -v qemu-system-x86_64 >/dev/null 2>&1 || need="$need qemu-system-x86"
[ -e /usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so ] || need="$need libvirt-daemon-driver-qemu"
command -v python3 >/dev/null 2>&1 || need="$need python3"
if [ -n "$need" ] && [ "${QUBES_LIBVIRT_NO_INSTALL:-}" = 1 ]; then
  log "missing:$need (not installing: QUBES_LIBVIRT_NO_INSTALL=1)"
  exit 1
fi
if [ -n "$need" ]; then
  log "installing:$need"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 || true
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $need >&2
fi

mkdir -p "$DIR" /run/libvirt
chmod 0755 "$DIR"

# The user and group QEMU runs as: what qemu.conf names, else Debian's
# compiled-in libvirt-qemu (user libvirt-qemu in groups kvm and
# libvirt-qemu, as libvirt-daemon-system's postinst creates them). Only what
# is missing is created, so running this again changes nothing.
conf_value() {
  [ -r /etc/libvirt/qemu.conf ] || return 0
  sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*\"\([^\"]*\)\".*/\1/p" /etc/libvirt/qemu.conf | tail -n 1
}
ensure_group() {
  case "$1" in ''|+*|[0-9]*) return 0 ;; esac
  getent group "$1" >/dev/null 2>&1 && return 0
  log "creating group $1 (QEMU runs with it)"
  groupadd --system "$1" || log "cannot create group $1; libvirtd will not start QEMU"
}
ensure_user() {
  case "$1" in ''|+*|[0-9]*) return 0 ;; esac
  getent passwd "$1" >/dev/null 2>&1 && return 0
  log "creating user $1 (QEMU runs as it)"
  useradd --system --gid "$2" --groups "$3" --home-dir /var/lib/libvirt --no-create-home \
    --shell /usr/sbin/nologin --comment "Libvirt Qemu" "$1" || log "cannot create user $1; libvirtd will not start QEMU"
}
qemu_user=$(conf_value user); qemu_user=${qemu_user:-libvirt-qemu}
qemu_group=$(conf_value group); qemu_group=${qemu_group:-libvirt-qemu}
ensure_group kvm
ensure_group "$qemu_group"
ensure_user "$qemu_user" kvm "$qemu_group"

# Without udev nobody gives /dev/kvm its usual Debian owner (root:kvm 0660),
# so QEMU (user libvirt-qemu, group kvm) cannot use it. libvirt then falls
# back to TCG but also re-probes QEMU's capabilities on every define (~5 s).
if [ -c /dev/kvm ] && getent group kvm >/dev/null 2>&1; then
  chgrp kvm /dev/kvm && chmod 0660 /dev/kvm || log "cannot fix /dev/kvm permissions; guests will use TCG"
fi

# 2. Anything left from an earlier run goes first.
stop_all

# Does another libvirtd (monolithic or modular) hold the system's run
# directory? Ours never puts its sockets or pid file there.
alive_pidfile() { [ -f "$1" ] && running "$(cat "$1" 2>/dev/null)"; }
PRIVATE=0
if [ -S /run/libvirt/libvirt-sock ] || [ -S /run/libvirt/virtqemud-sock ] \
   || alive_pidfile /run/libvirt/libvirtd.pid || alive_pidfile /run/libvirt/virtqemud.pid; then
  if unshare --mount --propagation private true 2>/dev/null; then
    PRIVATE=1
    log "another libvirtd holds /run/libvirt; ours gets private state under $DIR/state"
  else
    log "another libvirtd holds /run/libvirt and no private mount namespace can be made here;"
    log "use that one (QUBES_TEST_LIBVIRT_SOCK=/run/libvirt/libvirt-sock) or stop it"
    exit 1
  fi
fi

# 3. virtlogd: QEMU's console output goes through it. It keeps the system
# default socket (/run/libvirt/virtlogd-sock), which the QEMU driver expects.
# In private mode it runs inside the namespace, started with libvirtd below.
if [ $PRIVATE = 1 ]; then
  stop_pidfile "$DIR/virtlogd.pid"
elif ! alive_pidfile "$DIR/virtlogd.pid"; then
  rm -f /run/libvirt/virtlogd-sock /run/libvirt/virtlogd-admin-sock
  virtlogd -d -p "$DIR/virtlogd.pid"
fi

# 4. libvirtd's configuration: private socket directory, no authentication.
cat > "$DIR/libvirtd.conf" <<EOF
unix_sock_dir = "$DIR"
unix_sock_rw_perms = "0770"
auth_unix_rw = "none"
auth_unix_ro = "none"
log_outputs = "3:file:$DIR/libvirtd.log"
keepalive_interval = 5
keepalive_count = 5
EOF

# The subreaper: stays libvirtd's parent, adopts every orphan below it (the
# QEMU processes) and reaps it the moment it exits.
cat > "$DIR/reaper.py" <<'EOF'
import ctypes, os, signal, sys
PR_SET_CHILD_SUBREAPER = 36
if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
    sys.exit("prctl(PR_SET_CHILD_SUBREAPER) failed")
main = os.fork()
if main == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
def forward(sig, _frame):
    try: os.kill(main, sig)
    except ProcessLookupError: pass
for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(s, forward)
# Reap until libvirtd itself exits; guests still running then fall back to
# init, as they would without us.
while True:
    try:
        pid, st = os.wait()
    except InterruptedError:
        continue
    if pid == main:
        status = os.waitstatus_to_exitcode(st)
        sys.exit(status if status >= 0 else 128 - status)
EOF

log "starting libvirtd (socket $SOCK)"
if [ $PRIVATE = 1 ]; then
  # Every directory libvirt keeps system state in is bound to one of ours in
  # a mount namespace only virtlogd, libvirtd and its QEMUs live in; the
  # socket directory ($DIR) is not among them, so the tests reach it.
  for d in /run/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt /etc/libvirt/qemu; do
    mkdir -p "$d" "$DIR/state$d"
  done
  chmod 0755 "$DIR/state"
  # shellcheck disable=SC2016
  setsid unshare --mount --propagation private sh -c '
    set -e
    for d in /run/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt /etc/libvirt/qemu; do
      mount --bind "$1/state$d" "$d"
    done
    mkdir -p /var/log/libvirt/qemu /var/lib/libvirt/qemu /var/cache/libvirt/qemu
    virtlogd -d -p "$1/virtlogd.pid"
    exec python3 "$1/reaper.py" libvirtd -f "$1/libvirtd.conf" -p "$1/libvirtd.pid"
  ' libvirt-private "$DIR" </dev/null >>"$DIR/libvirtd.out" 2>&1 &
else
  setsid python3 "$DIR/reaper.py" libvirtd -f "$DIR/libvirtd.conf" -p "$DIR/libvirtd.pid" \
    </dev/null >>"$DIR/libvirtd.out" 2>&1 &
fi
echo $! > "$DIR/reaper.pid"

# 5. Wait until it answers.
i=0
until [ -S "$SOCK" ] && virsh -q -c "$URI" version >/dev/null 2>&1; do
  i=$((i + 1))
  if [ $i -gt 300 ] || ! kill -0 "$(cat "$DIR/reaper.pid")" 2>/dev/null; then
    log "libvirtd did not come up; its output:"
    tail -n 30 "$DIR/libvirtd.out" "$DIR/libvirtd.log" >&2 2>/dev/null || true
    exit 1
  fi
  sleep 0.1
done

cat > "$DIR/env" <<EOF
export QUBES_TEST_LIBVIRT_SOCK='$SOCK'
export QUBES_TEST_LIBVIRT_URI='$URI'
EOF
log "libvirtd is up ($(virsh -q -c "$URI" version 2>/dev/null | tr '\n' ' '))"
cat "$DIR/env"
