//! What the benchmark ran on: CPU model and features, cores, clock,
//! frequency governor, temperature and throttling, read from the running
//! system.

use serde::{Deserialize, Serialize};

/// Conditions of the machine during a benchmark.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Machine {
    /// Host name, to tell boards apart in merged reports.
    pub host: String,
    /// CPU model name (`/proc/cpuinfo`).
    pub cpu: String,
    /// The Arm core (`Cortex-A72`), from the CPU part number; `None` elsewhere.
    pub core: Option<String>,
    /// Architecture the binary was built for.
    pub arch: String,
    /// Logical cores available.
    pub cores: usize,
    /// SIMD features that matter to tract's kernels, as detected at run time.
    pub features: Vec<String>,
    /// cpufreq governor of CPU 0, when the system exposes it.
    pub governor: Option<String>,
    /// Current clock of CPU 0 in MHz, when cpufreq exposes it.
    pub clock_mhz: Option<f64>,
    /// Maximum clock of CPU 0 in MHz.
    pub max_clock_mhz: Option<f64>,
    /// Temperature of thermal zone 0 in °C, when the system exposes it.
    pub temperature_c: Option<f32>,
    /// Raspberry Pi firmware throttling flags (`get_throttled`), decoded;
    /// `None` where the firmware does not report them.
    pub throttling: Option<Vec<String>>,
}

impl Machine {
    /// Reads the running machine.
    pub fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        // A board's model (`Model: Raspberry Pi 4 Model B`) says more than an
        // Arm core's generic `model name` (`ARMv7 Processor rev 4`).
        let field = |key: &str| cpuinfo_field(&cpuinfo, key).map(str::to_string);
        let cpu = field("Model")
            .or_else(|| field("model name"))
            .or_else(|| field("Hardware"))
            .unwrap_or_else(|| "unknown".into());
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .ok()
                .map(|s| s.trim().to_string())
        };
        let khz_as_mhz = |p: &str| {
            read(p)
                .and_then(|t| t.parse::<f64>().ok())
                .map(|khz| khz / 1000.0)
        };
        Machine {
            host: read("/proc/sys/kernel/hostname").unwrap_or_else(|| "unknown".into()),
            core: arm_core(&cpuinfo),
            cpu,
            arch: std::env::consts::ARCH.to_string(),
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            features: simd_features().into_iter().map(str::to_string).collect(),
            governor: read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
            clock_mhz: khz_as_mhz("/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq"),
            max_clock_mhz: khz_as_mhz("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq"),
            temperature_c: read("/sys/class/thermal/thermal_zone0/temp")
                .and_then(|t| t.parse::<f32>().ok())
                .map(|milli| milli / 1000.0),
            throttling: read(THROTTLED)
                .and_then(|t| u32::from_str_radix(t.trim_start_matches("0x"), 16).ok())
                .map(decode_throttled),
        }
    }

    /// One line: CPU, cores, features, clock, governor, temperature, throttling.
    pub fn describe(&self) -> String {
        let or_na = |v: Option<String>| v.unwrap_or_else(|| "n/a".into());
        format!(
            "{}{} ({}, {} cores; {}), clock {}, governor {}, temperature {}, throttling {}",
            self.cpu,
            self.core
                .as_ref()
                .map(|c| format!(" [{c}]"))
                .unwrap_or_default(),
            self.arch,
            self.cores,
            if self.features.is_empty() {
                "no SIMD features detected".to_string()
            } else {
                self.features.join(" ")
            },
            or_na(self.clock_mhz.map(|c| match self.max_clock_mhz {
                Some(max) => format!("{c:.0} MHz (max {max:.0})"),
                None => format!("{c:.0} MHz"),
            })),
            self.governor.as_deref().unwrap_or("n/a"),
            or_na(self.temperature_c.map(|t| format!("{t:.0} °C"))),
            match &self.throttling {
                None => "n/a".to_string(),
                Some(flags) if flags.is_empty() => "none".to_string(),
                Some(flags) => flags.join(", "),
            },
        )
    }
}

/// The value of the first `key : value` line of `/proc/cpuinfo` text
/// whose key is `key`.
pub(crate) fn cpuinfo_field<'a>(cpuinfo: &'a str, key: &str) -> Option<&'a str> {
    cpuinfo
        .lines()
        .find(|l| l.split(':').next().is_some_and(|k| k.trim() == key))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim())
}

/// The Arm core named by the first `CPU part` of `/proc/cpuinfo` (Arm's
/// implementer 0x41 part numbers, as in the Linux kernel's `cputype.h`).
fn arm_core(cpuinfo: &str) -> Option<String> {
    let field = |key: &str| cpuinfo_field(cpuinfo, key);
    let part = field("CPU part")?;
    if field("CPU implementer") != Some("0x41") {
        // Not designed by Arm (Apple, Qualcomm Kryo, NVIDIA Carmel...).
        return Some(format!(
            "implementer {} part {part}",
            field("CPU implementer").unwrap_or("?")
        ));
    }
    let name = match part {
        "0xd03" => "Cortex-A53",
        "0xd04" => "Cortex-A35",
        "0xd05" => "Cortex-A55",
        "0xd07" => "Cortex-A57",
        "0xd08" => "Cortex-A72",
        "0xd09" => "Cortex-A73",
        "0xd0a" => "Cortex-A75",
        "0xd0b" => "Cortex-A76",
        "0xd0d" => "Cortex-A77",
        "0xd41" => "Cortex-A78",
        "0xd42" => "Cortex-A78AE",
        "0xd4b" => "Cortex-A78C",
        "0xc07" => "Cortex-A7",
        "0xc09" => "Cortex-A9",
        "0xc0f" => "Cortex-A15",
        other => return Some(format!("Arm part {other}")),
    };
    Some(name.to_string())
}

/// The Raspberry Pi firmware's throttling word (kernel 5.x+ exposes it here;
/// `vcgencmd get_throttled` prints the same bits).
const THROTTLED: &str = "/sys/devices/platform/soc/soc:firmware/get_throttled";

/// Names of the set bits of `get_throttled` (Raspberry Pi documentation,
/// "vcgencmd get_throttled").
pub fn decode_throttled(word: u32) -> Vec<String> {
    const BITS: [(u32, &str); 8] = [
        (0, "under-voltage now"),
        (1, "ARM frequency capped now"),
        (2, "throttled now"),
        (3, "soft temperature limit now"),
        (16, "under-voltage has occurred"),
        (17, "ARM frequency capping has occurred"),
        (18, "throttling has occurred"),
        (19, "soft temperature limit has occurred"),
    ];
    BITS.iter()
        .filter(|(bit, _)| word & (1 << bit) != 0)
        .map(|(_, name)| name.to_string())
        .collect()
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
    // The kernel says `asimddp` where Arm and the board profiles say `dotprod`.
    [("neon", "neon"), ("vfpv4", "vfpv4"), ("asimddp", "dotprod")]
        .into_iter()
        .filter(|(flag, _)| flags.split_whitespace().any(|w| w == *flag))
        .map(|(_, name)| name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_bits_are_named() {
        assert!(decode_throttled(0).is_empty());
        assert_eq!(
            decode_throttled(0x50005),
            vec![
                "under-voltage now",
                "throttled now",
                "under-voltage has occurred",
                "throttling has occurred"
            ]
        );
    }

    #[test]
    fn arm_cores_are_named_from_their_part_number() {
        let pi4 =
            "processor\t: 0\nBogoMIPS\t: 108.00\nCPU implementer\t: 0x41\nCPU part\t: 0xd08\n";
        assert_eq!(arm_core(pi4).as_deref(), Some("Cortex-A72"));
        assert_eq!(arm_core("model name\t: AMD EPYC\n"), None);
    }

    #[test]
    fn this_machine_is_described() {
        let m = Machine::detect();
        assert!(m.cores >= 1);
        assert_eq!(m.arch, std::env::consts::ARCH);
        assert!(m.describe().contains(&m.cpu));
    }
}
