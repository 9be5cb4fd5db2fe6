//! What else the machine was doing: load average and the busiest other
//! processes, printed beside the figures.

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Load {
    pub load_average: String,
    pub cores: usize,
    pub busiest: Vec<String>,
}

impl std::fmt::Display for Load {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "load average {} on {} cores",
            self.load_average, self.cores
        )?;
        if !self.busiest.is_empty() {
            write!(f, "; busiest: {}", self.busiest.join(", "))?;
        }
        Ok(())
    }
}

/// Reads /proc/loadavg and the three processes using the most CPU.
pub fn sample() -> Load {
    let load_average = std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".to_owned());
    let busiest = std::process::Command::new("ps")
        .args(["-eo", "pcpu,comm", "--sort=-pcpu", "--no-headers"])
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|line| !line.contains("ordo-bench") && !line.trim().starts_with("0.0"))
                .take(3)
                .map(|line| line.split_whitespace().rev().collect::<Vec<_>>().join(" "))
                .collect()
        })
        .unwrap_or_default();
    Load {
        load_average,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        busiest,
    }
}

/// CPU time counters from /proc/stat, to tell how busy the machine was
/// during one phase.
#[derive(Debug, Clone, Copy)]
pub struct CpuClock {
    busy: u64,
    total: u64,
}

impl CpuClock {
    pub fn now() -> Self {
        let line = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let fields: Vec<u64> = line
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .filter_map(|field| field.parse().ok())
            .collect();
        let total: u64 = fields.iter().sum();
        // idle and iowait are the 4th and 5th fields.
        let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
        Self {
            busy: total.saturating_sub(idle),
            total,
        }
    }

    /// Share of all cores busy since `self`, in percent.
    pub fn busy_percent_since(self) -> f64 {
        let now = Self::now();
        let total = now.total.saturating_sub(self.total).max(1);
        now.busy.saturating_sub(self.busy) as f64 * 100.0 / total as f64
    }
}
