//! Environment checks run before any executor starts: raise the open-files
//! and locked-memory limits, and make sure io_uring can be used, with a
//! message that says what is wrong and what to do. `scripts/check-env.sh`
//! prints the same diagnosis without starting the server.

/// glommio needs at least this much locked memory per process.
pub const MIN_MEMLOCK: u64 = 512 * 1024;

/// Raises the soft NOFILE and MEMLOCK limits to their hard limits.
/// Returns `(nofile, memlock)` soft limits after the change.
pub fn raise_limits() -> (u64, u64) {
    (raise(libc::RLIMIT_NOFILE), raise(libc::RLIMIT_MEMLOCK))
}

fn raise(resource: libc::__rlimit_resource_t) -> u64 {
    // SAFETY: getrlimit/setrlimit on a local struct.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(resource, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(resource, &raised) == 0 {
                return lim.rlim_max as u64;
            }
        }
        lim.rlim_cur as u64
    }
}

/// Checks that io_uring is usable; `Err` holds a diagnosis with a remedy.
pub fn check_io_uring(memlock: u64) -> Result<(), String> {
    if let Ok(v) = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled") {
        match v.trim() {
            "2" => {
                return Err(
                    "io_uring is disabled by sysctl (kernel.io_uring_disabled = 2). \
                    Run `sysctl -w kernel.io_uring_disabled=0` as root."
                        .into(),
                )
            }
            "1" => {
                // Allowed for root and members of kernel.io_uring_group only;
                // the probe below tells whether we are one of them.
            }
            _ => {}
        }
    }
    if memlock != libc::RLIM_INFINITY && memlock < MIN_MEMLOCK {
        return Err(format!(
            "locked-memory limit is {} KiB; io_uring needs at least {} KiB. \
             Raise it with `ulimit -l unlimited` (or LimitMEMLOCK=infinity in a systemd unit, \
             --ulimit memlock=-1 for Docker).",
            memlock / 1024,
            MIN_MEMLOCK / 1024
        ));
    }
    probe_io_uring_setup()
}

/// Creates and closes a tiny ring to see whether the syscall is allowed.
fn probe_io_uring_setup() -> Result<(), String> {
    // struct io_uring_params is 120 bytes; zeroed is a valid request.
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup reads and writes only `params`; we close the fd.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4u32, params.as_mut_ptr()) };
    if fd >= 0 {
        // SAFETY: closing the fd we just got.
        unsafe { libc::close(fd as i32) };
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    Err(match err.raw_os_error() {
        Some(libc::ENOSYS) => "io_uring is not available: the kernel lacks it or a seccomp \
            profile blocks it (Docker >= 25 and containerd block it by default). Run on a \
            Linux >= 5.8 host, or start the container with a seccomp profile that allows \
            io_uring_setup, io_uring_enter and io_uring_register."
            .to_string(),
        Some(libc::EPERM) | Some(libc::EACCES) => format!(
            "io_uring_setup was refused ({err}): kernel.io_uring_disabled is set or a \
             seccomp profile forbids it. Check `sysctl kernel.io_uring_disabled` (must be 0, \
             or 1 with this user in kernel.io_uring_group) and the container's seccomp profile."
        ),
        Some(libc::ENOMEM) => format!(
            "io_uring_setup failed for lack of locked memory ({err}). Raise the memlock \
             limit: `ulimit -l unlimited`."
        ),
        _ => format!("io_uring_setup failed: {err}"),
    })
}

/// The CPUs this process may run on (its affinity mask).
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: sched_getaffinity fills a local cpu_set_t.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_cpus_is_not_empty() {
        assert!(!allowed_cpus().is_empty());
    }

    #[test]
    fn low_memlock_is_diagnosed() {
        let err = check_io_uring(64 * 1024).unwrap_err();
        assert!(err.contains("ulimit -l"), "{err}");
    }
}
