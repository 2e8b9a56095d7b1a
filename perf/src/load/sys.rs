//! Process figures from `/proc` and `getrusage`, and the open-files limit.

use std::io;
use std::time::Duration;

/// CPU time and resident memory of one or more processes, summed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProcSample {
    /// utime + stime, in clock ticks (`/proc/PID/stat` fields 14 and 15).
    pub ticks: u64,
    /// VmRSS in bytes (`/proc/PID/status`).
    pub rss_bytes: u64,
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
pub fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// Samples every pid in `pids` and sums the figures.
pub fn sample(pids: &[u32]) -> io::Result<ProcSample> {
    let mut total = ProcSample::default();
    for &pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let bad = |what: &str| io::Error::other(format!("/proc/{pid}/{what}: unexpected format"));
        total.ticks += parse_stat_ticks(&stat).ok_or_else(|| bad("stat"))?;
        total.rss_bytes += parse_status_rss(&status).ok_or_else(|| bad("status"))?;
    }
    Ok(total)
}

/// utime + stime from the text of `/proc/PID/stat`. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted from the last `)`.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    // Field 3 (state) is the first after the name; utime is field 14, stime 15.
    let mut fields = after.split_ascii_whitespace().skip(14 - 3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// VmRSS in bytes from the text of `/proc/PID/status` (`VmRSS:    1234 kB`).
pub fn parse_status_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut parts = line["VmRSS:".len()..].split_ascii_whitespace();
    let kb: u64 = parts.next()?.parse().ok()?;
    (parts.next()? == "kB").then_some(kb * 1024)
}

/// CPU time (user + system) this process used so far, all threads.
pub fn self_cpu() -> Duration {
    // SAFETY: rusage is plain old data; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Raises the soft open-files limit to the hard one; returns the soft limit now in force.
pub fn raise_nofile_limit() -> u64 {
    // SAFETY: rlimit is plain old data.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to an rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: valid pointer to an rlimit; raising the soft limit up to the hard one is allowed.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    lim.rlim_cur as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_a_name_with_spaces_and_parens() {
        let stat = "1234 (my (odd) proc) S 1 1234 1234 0 -1 4194560 100 0 0 0 57 43 0 0 20 0 \
                    4 0 100 1000000 250 18446744073709551615";
        assert_eq!(parse_stat_ticks(stat), Some(100));
        assert_eq!(parse_stat_ticks("garbage"), None);
    }

    #[test]
    fn status_rss() {
        let status = "Name:\tx\nVmPeak:\t  9000 kB\nVmRSS:\t    1234 kB\nThreads:\t1\n";
        assert_eq!(parse_status_rss(status), Some(1234 * 1024));
        assert_eq!(parse_status_rss("Name:\tx\n"), None);
    }

    #[test]
    fn sampling_ourselves() {
        let me = std::process::id();
        let s = sample(&[me]).unwrap();
        assert!(s.rss_bytes > 0);
        assert!(ticks_per_second() > 0);
        assert!(sample(&[u32::MAX]).is_err());
    }
}
