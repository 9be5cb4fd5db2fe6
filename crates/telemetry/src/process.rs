//! The families every Prometheus client exposes about its process, under
//! their standard names (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_virtual_memory_bytes`,
//! `process_open_fds`, `process_max_fds`, `process_start_time_seconds`),
//! read from `/proc/self` at each scrape; and `ordo_build_info`.
//!
//! Off Linux (no `/proc`) the process families are left out, not zero. CPU
//! and start time are in clock ticks in `/proc`: like the Prometheus Go
//! client, this takes the Linux default of 100 per second (reading
//! `sysconf(_SC_CLK_TCK)` would need `unsafe`).

use std::path::Path;

use crate::metrics::Exposition;

/// Clock ticks per second on every Linux Prometheus runs on.
const TICKS_PER_SECOND: f64 = 100.0;

/// What `/proc/self` says, in the families' units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessFigures {
    pub cpu_seconds: f64,
    pub start_time_seconds: f64,
    pub resident_bytes: f64,
    pub virtual_bytes: f64,
    pub open_fds: f64,
    pub max_fds: Option<f64>,
}

impl ProcessFigures {
    /// This process, now; `None` without a readable `/proc`.
    pub fn read() -> Option<Self> {
        let proc = Path::new("/proc");
        let stat = std::fs::read_to_string(proc.join("self/stat")).ok()?;
        let status = std::fs::read_to_string(proc.join("self/status")).ok()?;
        let boot = std::fs::read_to_string(proc.join("stat")).ok()?;
        let open_fds = std::fs::read_dir(proc.join("self/fd")).ok()?.count();
        let limits = std::fs::read_to_string(proc.join("self/limits")).unwrap_or_default();
        Self::parse(&stat, &status, &boot, open_fds, &limits)
    }

    /// From the text of `/proc/self/stat`, `/proc/self/status`, `/proc/stat`
    /// and `/proc/self/limits`, and the number of open descriptors.
    pub fn parse(
        stat: &str,
        status: &str,
        boot: &str,
        open_fds: usize,
        limits: &str,
    ) -> Option<Self> {
        // The command name (2nd field) may hold spaces and parentheses: the
        // fields that follow start after its last ')'. Field 3 (state) is [0].
        let fields: Vec<&str> = stat
            .get(stat.rfind(')')? + 1..)?
            .split_whitespace()
            .collect();
        let field = |number: usize| -> Option<f64> { fields.get(number - 3)?.parse().ok() };
        let cpu_ticks = field(14)? + field(15)?;
        let start_ticks = field(22)?;
        let boot_time: f64 = boot
            .lines()
            .find_map(|line| line.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()?;
        let kilobytes = |key: &str| -> Option<f64> {
            let value = status.lines().find_map(|line| line.strip_prefix(key))?;
            let number: f64 = value.trim().trim_end_matches("kB").trim().parse().ok()?;
            Some(number * 1024.0)
        };
        let max_fds = limits
            .lines()
            .find_map(|line| line.strip_prefix("Max open files"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|soft| soft.parse().ok());
        Some(Self {
            cpu_seconds: cpu_ticks / TICKS_PER_SECOND,
            start_time_seconds: boot_time + start_ticks / TICKS_PER_SECOND,
            resident_bytes: kilobytes("VmRSS:").unwrap_or(0.0),
            virtual_bytes: kilobytes("VmSize:").unwrap_or(0.0),
            open_fds: open_fds as f64,
            max_fds,
        })
    }

    /// The standard `process_*` families.
    pub fn expose(&self, out: &mut Exposition) {
        let none: &[(&str, &str)] = &[];
        out.counter(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            [(none, self.cpu_seconds)],
        );
        out.gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            [(none, self.resident_bytes)],
        );
        out.gauge(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            [(none, self.virtual_bytes)],
        );
        out.gauge(
            "process_open_fds",
            "Number of open file descriptors.",
            [(none, self.open_fds)],
        );
        if let Some(max_fds) = self.max_fds {
            out.gauge(
                "process_max_fds",
                "Maximum number of open file descriptors.",
                [(none, max_fds)],
            );
        }
        out.gauge(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            [(none, self.start_time_seconds)],
        );
    }
}

/// The `process_*` families of this process (none off Linux), and
/// `ordo_build_info{version, commit} 1`.
pub fn expose(out: &mut Exposition, version: &str, commit: &str) {
    if let Some(figures) = ProcessFigures::read() {
        figures.expose(out);
    }
    out.gauge(
        "ordo_build_info",
        "The running build: its version and git commit (always 1).",
        [(&[("version", version), ("commit", commit)][..], 1.0)],
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_come_from_proc_text() {
        let stat = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 8 0 12345 104857600 2560 18446744073709551615";
        let status = "Name:\tx\nVmSize:\t  102400 kB\nVmRSS:\t    10240 kB\n";
        let boot = "cpu  1 2 3\nbtime 1700000000\nprocesses 9\n";
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        let figures = ProcessFigures::parse(stat, status, boot, 17, limits).unwrap();
        assert_eq!(figures.cpu_seconds, 3.0);
        assert_eq!(figures.start_time_seconds, 1_700_000_123.45);
        assert_eq!(figures.resident_bytes, 10_485_760.0);
        assert_eq!(figures.virtual_bytes, 104_857_600.0);
        assert_eq!(figures.open_fds, 17.0);
        assert_eq!(figures.max_fds, Some(1024.0));
    }

    #[test]
    fn this_process_exposes_the_standard_families() {
        let mut out = Exposition::new();
        expose(&mut out, "0.1.0", "abc1234");
        let text = out.finish();
        assert!(text.contains("ordo_build_info{version=\"0.1.0\",commit=\"abc1234\"} 1"));
        if cfg!(target_os = "linux") {
            for family in [
                "process_cpu_seconds_total",
                "process_resident_memory_bytes",
                "process_open_fds",
                "process_start_time_seconds",
            ] {
                assert!(text.contains(&format!("\n{family} ")), "{family} in {text}");
            }
        }
    }
}
