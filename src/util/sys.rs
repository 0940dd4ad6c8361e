//! The few operating-system calls std does not wrap: the file-descriptor limit, signals as a
//! readable descriptor, and process figures for `/metrics`. Linux only, like the rest.
//!
//! **Invariant:** every `unsafe` block here is a single libc call on values it fully owns.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the limit now in force.
pub fn raise_fd_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    Ok(lim.rlim_cur)
}

/// The soft file-descriptor limit.
pub fn fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    lim.rlim_cur
}

/// SIGTERM, SIGINT and SIGHUP, blocked and delivered through a descriptor instead of a handler,
/// so no code runs in signal context. Create it before any thread starts: threads inherit the
/// blocked mask, so the signals reach only this descriptor.
pub struct Signals {
    fd: i32,
}

/// A signal the server acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Terminate,
    Interrupt,
    Hangup,
}

impl Signals {
    /// Blocks the three signals in this thread and opens the descriptor.
    pub fn new() -> io::Result<Self> {
        // SAFETY: sigset_t is plain data; the sigset functions and pthread_sigmask only touch it.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGHUP);
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
            let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(Signals { fd })
        }
    }

    /// Blocks until one of the signals arrives.
    pub fn wait(&self) -> io::Result<Signal> {
        loop {
            // SAFETY: signalfd_siginfo is plain data, and read writes at most its size into it.
            let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
            let size = std::mem::size_of::<libc::signalfd_siginfo>();
            let n = unsafe {
                libc::read(
                    self.fd,
                    (&mut info as *mut libc::signalfd_siginfo).cast(),
                    size,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n as usize != size {
                continue;
            }
            match info.ssi_signo as i32 {
                libc::SIGTERM => return Ok(Signal::Terminate),
                libc::SIGINT => return Ok(Signal::Interrupt),
                libc::SIGHUP => return Ok(Signal::Hangup),
                _ => continue,
            }
        }
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        // SAFETY: we own the descriptor and close it once.
        unsafe { libc::close(self.fd) };
    }
}

/// The descriptor count last taken by the sampler thread (`u64::MAX`: no sampler runs).
static OPEN_FDS: AtomicU64 = AtomicU64::new(u64::MAX);

/// This process's open descriptors, counted by walking `/proc/self/fd`: one entry per
/// connection, so O(streams), never done on an event loop once the sampler runs.
/// `None` when it cannot be opened (out of descriptors, for one).
fn count_fds() -> Option<u64> {
    std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as u64)
}

/// How long the sampler waits after a walk of `/proc/self/fd` that took `walk`: a second, or
/// 100 times the walk when that is longer (at most 30 s), so the sampler's own cost stays under
/// 1 % of a core however many descriptors there are. At 19,000 streams a walk costs about
/// 29 ms of kernel time (dentries made for every entry); walking every second was 15 % of the
/// server's CPU in a 19,000-subscriber fan-out.
fn sampler_pause(walk: std::time::Duration) -> std::time::Duration {
    use std::time::Duration;
    (walk * 100).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

/// Starts (once) the thread that counts this process's descriptors (every second, less often
/// when a walk is costly: `sampler_pause`), so that `/metrics` reads a number instead of
/// walking `/proc/self/fd` on a loop per request.
pub fn start_fd_sampler() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        OPEN_FDS.store(count_fds().unwrap_or(0), Ordering::Relaxed);
        let spawned = std::thread::Builder::new()
            .name("fd-sampler".into())
            .spawn(|| {
                let mut pause = std::time::Duration::from_secs(1);
                loop {
                    std::thread::sleep(pause);
                    let started = std::time::Instant::now();
                    // Out of descriptors, the last count stands (it is the most there were).
                    if let Some(n) = count_fds() {
                        OPEN_FDS.store(n, Ordering::Relaxed);
                    }
                    pause = sampler_pause(started.elapsed());
                }
            });
        if spawned.is_err() {
            // No sampler: the count is taken where it is asked for, as before.
            OPEN_FDS.store(u64::MAX, Ordering::Relaxed);
        }
    });
}

/// Process-level figures read from the OS for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcessStats {
    pub rss_bytes: u64,
    pub open_fds: u64,
    pub max_fds: u64,
    pub cpu_seconds: f64,
}

/// Resident memory, open descriptors (as last sampled, once [`start_fd_sampler`] has run: a
/// second old, up to 30 s with tens of thousands of descriptors; counted now otherwise), the descriptor limit and CPU time of
/// this process.
pub fn process_stats() -> ProcessStats {
    let page = 4096u64;
    let rss_bytes = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * page);
    let open_fds = match OPEN_FDS.load(Ordering::Relaxed) {
        u64::MAX => count_fds().unwrap_or(0),
        sampled => sampled,
    };
    let (cpu_seconds, _) = rusage();
    ProcessStats {
        rss_bytes,
        open_fds,
        max_fds: fd_limit(),
        cpu_seconds,
    }
}

/// The figures that are cheap to read every second: RSS and CPU time (no descriptor count,
/// which walks `/proc/self/fd`: one entry per stream).
pub fn light_stats() -> ProcessStats {
    let rss_bytes = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096);
    ProcessStats {
        rss_bytes,
        open_fds: 0,
        max_fds: 0,
        cpu_seconds: rusage().0,
    }
}

/// This process's CPU time (user plus system, seconds) and peak resident memory (bytes);
/// zeros if `getrusage` fails. Shared by `sse-server`'s figures and `sse-load`'s report.
pub fn rusage() -> (f64, u64) {
    // SAFETY: rusage is plain data; getrusage writes into the struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return (0.0, 0);
    }
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    (
        t(ru.ru_utime) + t(ru.ru_stime),
        (ru.ru_maxrss.max(0) as u64) * 1024,
    )
}

/// Whether an accept error means "out of file descriptors".
pub fn is_fd_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_figures_are_plausible() {
        let s = process_stats();
        assert!(s.rss_bytes > 0 && s.open_fds >= 3 && s.max_fds > 0, "{s:?}");
        assert!(raise_fd_limit().unwrap() >= s.max_fds);
        assert!(is_fd_exhaustion(&io::Error::from_raw_os_error(
            libc::EMFILE
        )));
        assert!(!is_fd_exhaustion(&io::Error::from_raw_os_error(
            libc::ECONNABORTED
        )));
    }

    #[test]
    fn the_sampler_pauses_a_second_or_a_hundred_walks() {
        use std::time::Duration;
        let ms = Duration::from_millis;
        assert_eq!(sampler_pause(ms(0)), ms(1000));
        assert_eq!(sampler_pause(ms(5)), ms(1000));
        assert_eq!(sampler_pause(ms(29)), ms(2900));
        assert_eq!(sampler_pause(ms(2000)), ms(30_000));
    }
}
