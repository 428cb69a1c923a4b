//! What the benchmark ran on: CPU model and features, cores, frequency
//! governor and temperature, read from the running system.

use serde::Serialize;

/// Conditions of the machine during a benchmark.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// CPU model name (`/proc/cpuinfo`).
    pub cpu: String,
    /// Architecture the binary was built for.
    pub arch: &'static str,
    /// Logical cores available.
    pub cores: usize,
    /// SIMD features that matter to tract's kernels, as detected at run time.
    pub features: Vec<&'static str>,
    /// cpufreq governor of CPU 0, when the system exposes it.
    pub governor: Option<String>,
    /// Temperature of thermal zone 0 in °C, when the system exposes it.
    pub temperature_c: Option<f32>,
}

impl Machine {
    /// Reads the running machine.
    pub fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| {
                l.starts_with("model name") || l.starts_with("Model") || l.starts_with("Hardware")
            })
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .ok()
                .map(|s| s.trim().to_string())
        };
        Machine {
            cpu,
            arch: std::env::consts::ARCH,
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            features: simd_features(),
            governor: read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
            temperature_c: read("/sys/class/thermal/thermal_zone0/temp")
                .and_then(|t| t.parse::<f32>().ok())
                .map(|milli| milli / 1000.0),
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn simd_features() -> Vec<&'static str> {
    let mut f = vec![];
    macro_rules! probe {
        ($($name:tt),*) => {$(if std::arch::is_x86_feature_detected!($name) { f.push($name); })*};
    }
    probe!(
        "sse4.1",
        "avx",
        "avx2",
        "fma",
        "f16c",
        "avx512f",
        "avx512vnni",
        "avxvnni"
    );
    f
}

#[cfg(target_arch = "aarch64")]
fn simd_features() -> Vec<&'static str> {
    let mut f = vec![];
    macro_rules! probe {
        ($($name:tt),*) => {$(if std::arch::is_aarch64_feature_detected!($name) { f.push($name); })*};
    }
    probe!("neon", "fp16", "dotprod", "i8mm", "sve");
    f
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn simd_features() -> Vec<&'static str> {
    // 32-bit ARM and others: read the kernel's flags instead.
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags = cpuinfo
        .lines()
        .find(|l| l.starts_with("Features"))
        .unwrap_or_default();
    ["neon", "vfpv4", "asimddp"]
        .into_iter()
        .filter(|f| flags.split_whitespace().any(|w| w == *f))
        .collect()
}
