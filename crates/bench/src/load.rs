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
