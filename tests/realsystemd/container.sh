#!/bin/bash
# A throw-away machine with a REAL systemd as PID 1, for testing deploy/systemd/sentinel.service the
# way an operator runs it. The distribution's /lib/systemd/systemd boots in fresh pid, mount, uts,
# ipc, net and cgroup namespaces, on a copy-on-write overlay of this machine's / whose writes all
# land in RAM: nothing on the host changes, and teardown leaves nothing behind.
# Driven by tests/systemd_harness.py; usable by hand too:
#
#   export BOX=$(mktemp -d)
#   container.sh setup           # tmpfs + overlay of / at $BOX/root, quiet units masked (copy only)
#   container.sh chroot CMD...   # run CMD in the copy before boot (installing things)
#   container.sh boot            # start systemd, wait until it is running (or degraded)
#   container.sh exec CMD...     # run CMD inside the booted machine (systemctl, journalctl, ...)
#   container.sh teardown        # poweroff, wait, unmount, remove the cgroup (always safe to call)
#
# Needs root with CAP_SYS_ADMIN, overlayfs, and a writable cgroup2 hierarchy (pure v2 at
# /sys/fs/cgroup, or hybrid at /sys/fs/cgroup/unified). The network namespace has only loopback.
set -euo pipefail
BOX=${BOX:?set BOX to a work folder}
ROOT=$BOX/root
NAME=${BOX_NAME:-sentinel-box-$(basename "$BOX")}
if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then
  CGBASE=/sys/fs/cgroup
else
  CGBASE=/sys/fs/cgroup/unified
fi
CG=$CGBASE/$NAME
SELF=$(readlink -f "$0")
CLEANPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

hostpid() { cat "$BOX/systemd.hostpid" 2>/dev/null || true; }

case ${1:-} in
setup)
  mkdir -p "$BOX/rw" "$ROOT"
  mountpoint -q "$BOX/rw" || mount -t tmpfs -o size=2G,mode=755 "$NAME-rw" "$BOX/rw"
  mkdir -p "$BOX/rw/upper" "$BOX/rw/work"
  mountpoint -q "$ROOT" || mount -t overlay "$NAME-root" \
    -o "lowerdir=/,upperdir=$BOX/rw/upper,workdir=$BOX/rw/work" "$ROOT"
  # A quiet boot: the units this image enables (databases, web servers) stay off in the copy,
  # and no getty runs (its vhangup() on /dev/console would hang up our pty and take systemd down).
  ( cd "$ROOT/etc/systemd/system"
    for w in multi-user default sockets timers getty; do
      for f in "$w.target.wants"/*; do
        [ -L "$f" ] && [ "$f" != multi-user.target.wants/remote-fs.target ] && rm -f "$f"
      done
    done
    for u in console-getty.service getty@tty1.service systemd-timesyncd.service; do
      ln -sfn /dev/null "$u"
    done )
  mkdir -p "$ROOT/etc/systemd/system-generators"
  ln -sfn /dev/null "$ROOT/etc/systemd/system-generators/systemd-sysv-generator"
  ;;
chroot)
  shift
  unshare -m sh -c \
    'mount --bind /proc "$1/proc" && mount --rbind /dev "$1/dev" && shift && exec chroot "$@"' \
    sh "$ROOT" "$ROOT" env -i PATH=$CLEANPATH HOME=/root LANG=C.UTF-8 "$@"
  ;;
boot)
  [ -n "$(ls -A "$ROOT" 2>/dev/null)" ] || { echo "container.sh: run setup first" >&2; exit 1; }
  # script(1) gives the launcher a pty: it becomes the machine's /dev/console.
  setsid script -qfec "bash $SELF _launch" "$BOX/console.log" </dev/null >/dev/null 2>&1 &
  echo $! > "$BOX/script.pid"
  for _ in $(seq 1 300); do
    pid=$(hostpid)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      if state=$(nsenter -t "$pid" -a systemctl is-system-running --wait 2>/dev/null) \
          || [ "$state" = degraded ]; then
        echo "systemd up (host pid $pid): $state"; exit 0
      fi
    fi
    sleep 0.2
  done
  echo "container.sh: no systemd came up; see $BOX/console.log" >&2; exit 1
  ;;
_launch)   # under script(1): our own cgroup, then new namespaces
  rm -f "$BOX/systemd.hostpid"
  [ -d "$CG" ] && find "$CG" -mindepth 1 -depth -type d -exec rmdir {} + 2>/dev/null || true
  mkdir -p "$CG"; echo $$ > "$CG/cgroup.procs"
  exec setsid -w unshare --pid --fork --kill-child --mount --uts --ipc --net --cgroup \
    --propagation private bash "$SELF" _pid1 "$(tty)"
  ;;
_pid1)     # PID 1 of the new pid namespace: the API file systems (as systemd-nspawn does), then systemd
  CONSOLE=$2
  # Our PID as the host sees it (/proc is still the host's; `read` opens it in this very shell).
  read -r pid _ < /proc/self/stat; echo "$pid" > "$BOX/systemd.hostpid"
  mount -t proc -o nosuid,nodev,noexec proc "$ROOT/proc"
  for p in sys sysrq-trigger; do
    [ -e "$ROOT/proc/$p" ] || continue
    mount --bind "$ROOT/proc/$p" "$ROOT/proc/$p"; mount -o remount,bind,ro "$ROOT/proc/$p"
  done
  mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$ROOT/sys"
  mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$ROOT/sys/fs/cgroup"
  mount -t tmpfs -o mode=755,nosuid,size=16m dev "$ROOT/dev"
  for d in null zero full random urandom tty; do
    touch "$ROOT/dev/$d"; mount --bind "/dev/$d" "$ROOT/dev/$d"
  done
  mkdir -p "$ROOT/dev/pts" "$ROOT/dev/shm" "$ROOT/dev/mqueue"
  mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 devpts "$ROOT/dev/pts"
  ln -s pts/ptmx "$ROOT/dev/ptmx"
  mount -t tmpfs -o mode=1777,nosuid,nodev shm "$ROOT/dev/shm"
  mount -t mqueue mqueue "$ROOT/dev/mqueue"
  ln -s /proc/self/fd "$ROOT/dev/fd"
  for i in 0:stdin 1:stdout 2:stderr; do ln -s "/proc/self/fd/${i%%:*}" "$ROOT/dev/${i#*:}"; done
  touch "$ROOT/dev/console"; mount --bind "$CONSOLE" "$ROOT/dev/console"
  mount -t tmpfs -o mode=755,nosuid,nodev,size=256m run "$ROOT/run"
  mount -t tmpfs -o mode=1777,nosuid,nodev tmp "$ROOT/tmp"
  hostname "$NAME"
  cd "$ROOT"; pivot_root . .; umount -l .; cd /
  # systemd leaves this to the container manager (nspawn does it): without shared propagation
  # LoadCredential= hands the service an EMPTY credentials directory, and PrivateTmp= misbehaves.
  mount --make-rshared /
  # What a container may not do; container= makes systemd behave as in one.
  exec capsh --drop=cap_sys_module,cap_sys_time,cap_sys_rawio,cap_syslog,cap_wake_alarm -- -c \
    'exec env -i container=sentinel-test TERM=vt220 /lib/systemd/systemd --system --unit=multi-user.target'
  ;;
exec)
  shift
  exec nsenter -t "$(hostpid)" -a env -i PATH=$CLEANPATH HOME=/root LANG=C.UTF-8 TERM=dumb \
    SYSTEMD_PAGER= SYSTEMD_COLORS=0 "$@"
  ;;
teardown)
  pid=$(hostpid)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    nsenter -t "$pid" -a systemctl poweroff 2>/dev/null || true
  fi
  launcher=$(cat "$BOX/script.pid" 2>/dev/null || true)
  if [ -n "$launcher" ]; then
    for _ in $(seq 1 150); do kill -0 "$launcher" 2>/dev/null || break; sleep 0.2; done
    # A machine that would not power off: its whole process group goes (it is ours alone).
    if kill -0 "$launcher" 2>/dev/null; then
      kill -KILL -- "-$launcher" 2>/dev/null || true
      [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
    fi
  fi
  mountpoint -q "$ROOT" && umount "$ROOT"
  mountpoint -q "$BOX/rw" && umount "$BOX/rw"
  [ -d "$CG" ] && find "$CG" -depth -type d -exec rmdir {} + 2>/dev/null || true
  rmdir "$ROOT" "$BOX/rw" 2>/dev/null || true
  echo "torn down"
  ;;
*) sed -n '2,15p' "$SELF"; exit 2 ;;
esac
