//! CPU time from `/proc` (Linux): a process's or a thread's utime + stime, the clock-tick
//! length, and which process listens on a TCP port. Every reader returns `None` (or an
//! explanation) rather than a guess when `/proc` does not say.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// proc(5): `/proc/<pid>/stat` field 14 is utime and 15 stime, in clock ticks. The command
/// name (field 2) is in parentheses and may itself hold spaces and parentheses, so fields are
/// counted from the last `)`.
pub fn cpu_ticks_from_stat(stat: &str) -> Option<u64> {
    let after_comm = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = after_comm.split_ascii_whitespace();
    // The first field after the name is field 3 (state): utime is 11 fields further.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The auxiliary vector's `AT_CLKTCK`: the clock-tick rate the kernel reports to processes,
/// which is what `sysconf(_SC_CLK_TCK)` returns (read here without `unsafe`).
pub fn clock_ticks_from_auxv(auxv: &[u8]) -> Option<u64> {
    const AT_CLKTCK: usize = 17;
    let word = size_of::<usize>();
    auxv.chunks_exact(2 * word).find_map(|pair| {
        let (key, value) = pair.split_at(word);
        let key = usize::from_ne_bytes(key.try_into().ok()?);
        let value = usize::from_ne_bytes(value.try_into().ok()?);
        (key == AT_CLKTCK && value > 0).then_some(value as u64)
    })
}

/// Clock ticks per second, and whether it was assumed (100, the usual value) because
/// `/proc/self/auxv` could not be read.
pub fn clock_ticks_per_second() -> (u64, bool) {
    match std::fs::read("/proc/self/auxv")
        .ok()
        .and_then(|a| clock_ticks_from_auxv(&a))
    {
        Some(t) => (t, false),
        None => (100, true),
    }
}

/// The inodes of the sockets in LISTEN state on `port` in a `/proc/net/tcp` or `tcp6` table.
pub fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    const LISTEN: &str = "0A";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_ascii_whitespace().collect();
            let (_, local_port) = fields.get(1)?.rsplit_once(':')?;
            if u16::from_str_radix(local_port, 16).ok()? != port || *fields.get(3)? != LISTEN {
                return None;
            }
            fields.get(9)?.parse().ok().filter(|&inode| inode != 0)
        })
        .collect()
}

/// The inode of a `/proc/<pid>/fd/<n>` link target `socket:[<inode>]`.
pub fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The pid of the `assent` process listening on TCP `port`, found through the socket's inode
/// (`/proc/net/tcp{,6}`, then the `/proc/*/fd` links). `Err` says why it was not found.
pub fn find_listener(port: u16) -> Result<u32, String> {
    let mut inodes = BTreeSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            inodes.extend(listening_inodes(&text, port));
        }
    }
    if inodes.is_empty() {
        return Err(format!(
            "no listening socket on port {port} in /proc/net/tcp (a server in another network \
             namespace or container?)"
        ));
    }
    let mut owners = BTreeSet::new();
    let procs = std::fs::read_dir("/proc").map_err(|e| format!("cannot list /proc: {e}"))?;
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // Other users' fd directories are unreadable: those processes are skipped.
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let owns = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .ok()
                .and_then(|l| l.to_str().and_then(socket_inode))
                .is_some_and(|inode| inodes.contains(&inode))
        });
        if owns {
            owners.insert(pid);
        }
    }
    let mut owners = owners.into_iter();
    let (Some(pid), None) = (owners.next(), owners.next()) else {
        return Err(format!(
            "no single process of this user owns the socket listening on port {port}"
        ));
    };
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let comm = comm.trim();
    if !comm.starts_with("assent") {
        return Err(format!(
            "the process listening on port {port} is pid {pid} ({comm}), not assent (a proxy?)"
        ));
    }
    Ok(pid)
}

/// `/proc/<pid>/stat`.
pub fn process_stat(pid: u32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/stat"))
}

/// `/proc/self/stat`: this process.
pub fn own_stat() -> PathBuf {
    PathBuf::from("/proc/self/stat")
}

/// The stat file of the calling thread (`/proc/thread-self` names `<pid>/task/<tid>`).
pub fn current_thread_stat() -> Option<PathBuf> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    Some(Path::new("/proc").join(link).join("stat"))
}

/// Reads CPU time (utime + stime) from stat files, converting ticks with the tick rate.
#[derive(Debug, Clone, Copy)]
pub struct CpuClock {
    pub ticks_per_second: u64,
}

impl CpuClock {
    /// The CPU time the stat file at `path` reports, or `None` when it cannot be read.
    pub fn read(&self, path: &Path) -> Option<Duration> {
        let ticks = cpu_ticks_from_stat(&std::fs::read_to_string(path).ok()?)?;
        let micros = u128::from(ticks) * 1_000_000 / u128::from(self.ticks_per_second.max(1));
        Some(Duration::from_micros(u64::try_from(micros).ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_is_utime_plus_stime() {
        let stat = "4242 (assent) S 1 4242 4242 0 -1 4194560 1234 0 5 0 731 269 0 0 20 0 \
                    9 0 5000 123456789 4000 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 \
                    1 0 0 0 0 0";
        assert_eq!(cpu_ticks_from_stat(stat), Some(1000));
    }

    #[test]
    fn stat_survives_a_command_name_with_spaces_and_parentheses() {
        let stat = "7 (a (b) c) R 1 7 7 0 -1 0 0 0 0 0 12 30 0 0 20 0 1 0 1 1 1";
        assert_eq!(cpu_ticks_from_stat(stat), Some(42));
    }

    #[test]
    fn a_truncated_or_garbled_stat_gives_nothing() {
        assert_eq!(cpu_ticks_from_stat(""), None);
        assert_eq!(cpu_ticks_from_stat("1 (x) S 1 2 3"), None);
        assert_eq!(
            cpu_ticks_from_stat("1 (x) S 1 1 1 0 -1 0 0 0 0 0 ten 5 0"),
            None
        );
    }

    #[test]
    fn this_process_has_a_readable_cpu_time() {
        let clock = CpuClock {
            ticks_per_second: clock_ticks_per_second().0,
        };
        assert!(clock.read(&own_stat()).is_some());
        let thread = current_thread_stat().unwrap();
        assert!(clock.read(&thread).is_some(), "{}", thread.display());
    }

    #[test]
    fn auxv_yields_at_clktck() {
        let mut auxv = Vec::new();
        for (k, v) in [(6usize, 4096usize), (17, 100), (0, 0)] {
            auxv.extend_from_slice(&k.to_ne_bytes());
            auxv.extend_from_slice(&v.to_ne_bytes());
        }
        assert_eq!(clock_ticks_from_auxv(&auxv), Some(100));
        assert_eq!(clock_ticks_from_auxv(&auxv[..16]), None);
        assert_eq!(clock_ticks_from_auxv(&[]), None);
        // This machine's own vector has it.
        assert!(!clock_ticks_per_second().1);
    }

    #[test]
    fn listening_sockets_of_a_port_from_tcp_and_tcp6_tables() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31337 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 31338 1 0000000000000000 20 4 30 10 -1
   2: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 999 1 0000000000000000 100 0 0 10 0
";
        assert_eq!(listening_inodes(tcp, 8080), vec![31337]);
        assert_eq!(listening_inodes(tcp, 22), vec![999]);
        assert!(listening_inodes(tcp, 9).is_empty());
        let tcp6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1 0000000000000000 100 0 0 10 0
";
        assert_eq!(listening_inodes(tcp6, 8080), vec![4444]);
    }

    #[test]
    fn socket_links_name_their_inode() {
        assert_eq!(socket_inode("socket:[31337]"), Some(31337));
        assert_eq!(socket_inode("pipe:[31337]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
    }

    /// The lookup finds the owner of a socket this test process listens on (the test binary
    /// is `assent-<hash>`; were it named otherwise, it would be refused as "not assent"), and
    /// says when nothing listens.
    #[test]
    fn the_listener_of_a_port_is_found_through_proc() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let me = std::process::id();
        match find_listener(port) {
            Ok(pid) => assert_eq!(pid, me),
            Err(e) => assert!(
                e.contains(&format!("pid {me} (")) && e.contains("not assent"),
                "{e}"
            ),
        }
        drop(listener);
        let err = find_listener(port).unwrap_err();
        assert!(err.contains("no listening socket"), "{err}");
    }
}
