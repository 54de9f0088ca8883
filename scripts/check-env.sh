#!/usr/bin/env bash
# Diagnoses whether this machine can run shardcast, without starting it:
# kernel version, io_uring availability (sysctl, seccomp), locked-memory and
# open-files limits, and the CPUs this process may be pinned to. The server
# runs the same checks at startup (src/runtime/env_check.rs) and refuses to
# start with the same advice. The container image has it as
# shardcast-check-env (`docker run --entrypoint shardcast-check-env ...`
# with the options the server gets), so it also tells what a container may do.
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
  2) say seccomp "filter active: in a container, make sure its profile allows io_uring_setup, io_uring_enter, io_uring_register (Docker >= 25 blocks them by default; deploy/seccomp.json allows them)";;
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

# A test ring, as the server's probe makes (src/runtime/env_check.rs), with
# the same diagnosis per errno. perl-base is in every Debian system and
# image (debian:bookworm-slim too), so this also runs inside the container
# image; python3 where there is no perl. 425 is SYS_io_uring_setup on x86_64
# and aarch64; exiting closes the ring.
probe=""
if command -v perl >/dev/null 2>&1; then
  probe=$(perl -e 'my $p = "\0" x 120; my $fd = syscall(425, 4, $p);
    if ($fd >= 0) { print "ok\n"; exit 0 } printf "%d %s\n", $! + 0, "$!"')
elif command -v python3 >/dev/null 2>&1; then
  probe=$(python3 - <<'PY'
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
params = ctypes.create_string_buffer(120)
fd = libc.syscall(425, 4, params)
if fd >= 0:
    print("ok")
else:
    err = ctypes.get_errno()
    print(err, os.strerror(err))
PY
)
fi
errno=${probe%% *}; reason=${probe#* }
case "$errno" in
  "") say io_uring_setup "not probed (neither perl nor python3 here)";;
  ok) say io_uring_setup "a test ring was created (ok)";;
  38) bad io_uring_setup "io_uring is not available: the kernel lacks it or a seccomp profile blocks it (Docker >= 25 and containerd block it by default). Run on a Linux >= 5.8 host, or start the container with a seccomp profile that allows io_uring_setup, io_uring_enter and io_uring_register (deploy/seccomp.json).";;
  1|13) bad io_uring_setup "io_uring_setup was refused ($reason): kernel.io_uring_disabled is set or a seccomp profile forbids it. Check 'sysctl kernel.io_uring_disabled' (must be 0, or 1 with this user in kernel.io_uring_group) and the container's seccomp profile (deploy/seccomp.json allows io_uring)";;
  12) bad io_uring_setup "io_uring_setup failed for lack of locked memory ($reason). Raise the memlock limit: 'ulimit -l unlimited'";;
  *) bad io_uring_setup "io_uring_setup failed: $reason";;
esac

cpus=$(awk '/^Cpus_allowed_list:/ {print $2}' /proc/self/status)
say cpus "this process may run on CPUs $cpus (pick --cpus from these)"

if [ "$ok" -eq 1 ]; then echo "environment: ok"; exit 0; else echo "environment: NOT ready (see PROBLEM lines)"; exit 1; fi
