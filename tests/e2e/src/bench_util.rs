//! What the benchmarks share: their settings from the environment, resident memory and CPU
//! time of process groups, percentiles.

/// (pid, process group, the rest of `/proc/<pid>/stat` after the command name, the command
/// name) of every process.
fn processes() -> Vec<(u32, u32, String, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let name = head.split_once('(').map_or("", |(_, name)| name).to_owned();
        let pgrp = rest
            .split_whitespace()
            .nth(2)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        out.push((pid, pgrp, rest.to_owned(), name));
    }
    out
}

/// Resident memory (KiB) of every process in `groups`.
pub fn rss_kib(groups: &[u32]) -> u64 {
    processes()
        .into_iter()
        .filter(|(_, g, _, _)| groups.contains(g))
        .filter_map(|(pid, _, _, _)| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .sum()
}

/// CPU seconds (user + system) used so far by every process in `groups`.
pub fn cpu_secs(groups: &[u32]) -> f64 {
    cpu_secs_where(groups, |_| true)
}

/// CPU seconds used so far by the processes in `groups` whose command is `name` (`node`:
/// the launcher, which also carries the local Hyperdrive proxy; `workerd`: the Workers).
pub fn cpu_secs_of(groups: &[u32], name: &str) -> f64 {
    cpu_secs_where(groups, |command| command == name)
}

fn cpu_secs_where(groups: &[u32], named: impl Fn(&str) -> bool) -> f64 {
    // Fields after ")": state(0) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime(11) stime(12)
    let ticks: u64 = processes()
        .into_iter()
        .filter(|(_, g, _, name)| groups.contains(g) && named(name))
        .map(|(_, _, rest, _)| {
            let fields: Vec<&str> = rest.split_whitespace().collect();
            fields
                .get(11)
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0)
                + fields
                    .get(12)
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or(0)
        })
        .sum();
    // Linux reports in clock ticks of 1/100 s (USER_HZ).
    ticks as f64 / 100.0
}

/// The `p`-th percentile (0..=100) of sorted samples.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// The benchmark setting `name` from the environment, else `default`.
pub fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}
