#!/usr/bin/env bash
# Diagnoses whether this machine can run shardcast, without starting it:
# kernel version, io_uring availability (sysctl, seccomp), locked-memory and
# open-files limits, and the CPUs this process may be pinned to. The server
# runs the same checks at startup (src/runtime/env_check.rs) and refuses to
# start with the same advice.
set -u
ok=1
say() { printf '%-16s %s\n' "$1" "$2"; }
bad() { say "$1" "PROBLEM: $2"; ok=0; }

kernel=$(uname -r)
major=${kernel%%.*}; rest=${kernel#*.}; minor=${rest%%.*}
if [ "$major" -gt 5 ] || { [ "$major" -eq 5 ] && [ "$minor" -ge 8 ]; }; then
  say kernel "$kernel (>= 5.8: ok)"
else
  bad kernel "$kernel is older than 5.8; glommio needs Linux >= 5.8"
fi

if [ -r /proc/sys/kernel/io_uring_disabled ]; then
  v=$(cat /proc/sys/kernel/io_uring_disabled)
  case "$v" in
    0) say io_uring_disabled "0 (ok)";;
    1) say io_uring_disabled "1: only root and kernel.io_uring_group members may use io_uring";;
    2) bad io_uring_disabled "2: io_uring is disabled. Run 'sysctl -w kernel.io_uring_disabled=0' as root.";;
  esac
else
  say io_uring_disabled "sysctl absent (older kernel: io_uring is not restricted by sysctl)"
fi

seccomp=$(awk '/^Seccomp:/ {print $2}' /proc/self/status 2>/dev/null)
case "$seccomp" in
  2) say seccomp "filter active: in a container, make sure its profile allows io_uring_setup, io_uring_enter, io_uring_register (Docker >= 25 blocks them by default)";;
  *) say seccomp "no filter (ok)";;
esac

memlock=$(ulimit -l); memlock_hard=$(ulimit -Hl)
if [ "$memlock_hard" = unlimited ] || [ "$memlock_hard" -ge 512 ]; then
  say memlock "soft $memlock KiB, hard $memlock_hard KiB (the server raises soft to hard; needs >= 512 KiB)"
else
  bad memlock "hard limit $memlock_hard KiB is below 512 KiB; raise it: 'ulimit -l unlimited', LimitMEMLOCK=infinity (systemd), --ulimit memlock=-1 (Docker)"
fi

nofile=$(ulimit -n); nofile_hard=$(ulimit -Hn)
say open-files "soft $nofile, hard $nofile_hard (the server raises soft to hard; about one per connection)"

if command -v python3 >/dev/null 2>&1; then
  if python3 - <<'PY'
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
params = ctypes.create_string_buffer(120)
fd = libc.syscall(425, 4, params)  # SYS_io_uring_setup on x86_64 and aarch64
if fd >= 0:
    os.close(fd); sys.exit(0)
err = ctypes.get_errno()
print(os.strerror(err)); sys.exit(1)
PY
  then say io_uring_setup "a test ring was created (ok)"
  else bad io_uring_setup "refused: io_uring is blocked (seccomp, sysctl, or missing kernel support)"
  fi
fi

cpus=$(awk '/^Cpus_allowed_list:/ {print $2}' /proc/self/status)
say cpus "this process may run on CPUs $cpus (pick --cpus from these)"

if [ "$ok" -eq 1 ]; then echo "environment: ok"; exit 0; else echo "environment: NOT ready (see PROBLEM lines)"; exit 1; fi
