//! `--board`: does the machine the benchmark runs on match the board profile,
//! and what peak throughput do the "% of peak" figures compare against?

use edgewise_boards::{Board, Precision};

use crate::machine::Machine;
use crate::report::BoardCheck;

/// The architecture (as `std::env::consts::ARCH` names it) a target triple builds for.
fn arch_of(target: &str) -> &str {
    match target.split('-').next().unwrap_or_default() {
        a if a.starts_with("armv7") || a == "arm" => "arm",
        a => a,
    }
}

/// The profile named `host` describes whatever machine runs the benchmark:
/// its CPU, cores, SIMD features and clock (when the system reports one)
/// replace the file's, and the peak per cycle is estimated from the widest
/// vector unit (two pipes of it; CPUs that split wide vectors, like Zen 1
/// for AVX2 or Zen 4 for AVX-512, reach half). Other profiles describe a
/// board and come back unchanged.
pub fn for_this_machine(mut board: Board, machine: &Machine) -> Board {
    if board.name != "host" {
        return board;
    }
    let has = |f: &str| machine.features.iter().any(|m| m == f);
    // f32 lanes of the widest vector, and int8 multiply-adds per f32 lane
    // (four with dot-product instructions, two through 16-bit pairs).
    let (lanes, note) = if has("avx512f") {
        (16, "AVX-512")
    } else if has("avx2") && has("fma") {
        (8, "AVX2 and FMA")
    } else if has("neon") || machine.arch == "aarch64" {
        (4, "NEON")
    } else {
        (4, "128-bit vectors")
    };
    let i8_per_lane = if has("avx512vnni") || has("avxvnni") || has("dotprod") {
        4
    } else {
        2
    };
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let pipes = if splits_widest_vectors(&cpuinfo, &machine.features) {
        1
    } else {
        2
    };
    board.title = format!("This machine ({}, {} cores)", machine.cpu, machine.cores);
    board.soc = machine.cpu.clone();
    board.core = machine.core.clone().unwrap_or_else(|| machine.arch.clone());
    board.cores = machine.cores;
    if let Some(mhz) = machine.max_clock_mhz.or(machine.clock_mhz) {
        board.clock_ghz = mhz / 1000.0;
    }
    board.cpu.lacks = board
        .cpu
        .features
        .iter()
        .chain(&board.cpu.lacks)
        .filter(|f| !has(f))
        .cloned()
        .collect();
    board.cpu.features = machine.features.clone();
    board.peak.f32_macs_per_cycle = pipes * lanes;
    board.peak.i8_macs_per_cycle = pipes * lanes * i8_per_lane;
    board.peak.note = format!(
        "Per core, estimated from this CPU's {note}: {pipes} vector pipe(s) of {lanes} f32 lanes at full width, {i8_per_lane} int8 multiply-adds per lane"
    );
    board
}

/// Whether the CPU of `cpuinfo` runs its widest vectors (of `features`)
/// at half rate, as two halves: AMD's first Zen cores (family 23, models
/// below 0x30) split AVX2, and Zen 4 (family 25, with AVX-512) splits
/// AVX-512. Their peak per cycle is half of two full-width pipes.
fn splits_widest_vectors(cpuinfo: &str, features: &[String]) -> bool {
    let field = |key: &str| crate::machine::cpuinfo_field(cpuinfo, key);
    if field("vendor_id") != Some("AuthenticAMD") {
        return false;
    }
    let number = |key: &str| field(key).and_then(|v| v.parse::<u32>().ok());
    let avx512 = features.iter().any(|f| f == "avx512f");
    match (number("cpu family"), number("model")) {
        (Some(23), Some(model)) => model < 0x30,
        (Some(25), Some(_)) => avx512,
        _ => false,
    }
}

/// Compares `machine` with `board` and gives the peak at `precision` on
/// `threads` threads, with a warning for every difference that makes the
/// share of peak (or the timings) unrepresentative of the board.
pub fn check(
    board: &Board,
    machine: &Machine,
    precision: Precision,
    threads: usize,
) -> (BoardCheck, Vec<String>) {
    let mut warnings = vec![];
    let name = &board.name;
    // A board may run a 64-bit or, with its alternative target, a 32-bit OS.
    let board_arch = arch_of(&board.build.target);
    let same_arch = board_arch == machine.arch
        || board
            .build
            .alt_target
            .as_deref()
            .is_some_and(|t| arch_of(t) == machine.arch);
    if !same_arch {
        warnings.push(format!(
            "this is an {} machine but the `{name}` profile is for {board_arch} ({}): its timings do not represent the board",
            machine.arch, board.title
        ));
    }
    if machine.cores != board.cores {
        warnings.push(format!(
            "{} cores here, {} on the `{name}` profile",
            machine.cores, board.cores
        ));
    }
    if let Some(core) = &machine.core
        && !core.eq_ignore_ascii_case(&board.core)
    {
        warnings.push(format!(
            "the CPU is a {core}, the `{name}` profile is a {}",
            board.core
        ));
    }
    // Without a core name (x86 reports none), the vendor tells a profile
    // written for another CPU: its peak is not this machine's.
    let vendor = board.soc.split_whitespace().next().unwrap_or_default();
    if machine.core.is_none()
        && !vendor.is_empty()
        && !machine.cpu.to_lowercase().contains(&vendor.to_lowercase())
    {
        warnings.push(format!(
            "the CPU is an {}, the `{name}` profile describes an {} ({}): its peak is not this CPU's",
            machine.cpu, board.soc, board.core
        ));
    }
    if same_arch {
        let has = |f: &str| machine.features.iter().any(|m| m == f);
        let missing: Vec<&str> = board
            .cpu
            .features
            .iter()
            .map(String::as_str)
            .filter(|f| !has(f))
            .collect();
        if !missing.is_empty() {
            warnings.push(format!(
                "the `{name}` profile expects {} but this CPU lacks it",
                missing.join(", ")
            ));
        }
        let extra: Vec<&str> = board
            .cpu
            .lacks
            .iter()
            .map(String::as_str)
            .filter(|f| has(f))
            .collect();
        if !extra.is_empty() {
            warnings.push(format!(
                "this CPU has {}, which the `{name}` board lacks: kernels here may be faster than on the board",
                extra.join(", ")
            ));
        }
    }
    if precision == Precision::F16 && !board.cpu.features.iter().any(|f| f == "fp16") {
        warnings.push(format!(
            "the `{name}` board has no half-precision arithmetic: tract emulates f16 there, slower than f32; run it in f32 or INT8"
        ));
    }
    // On the board itself the running CPU's maximum clock is the better
    // figure (a Pi 4 runs at 1.5 or 1.8 GHz by revision); on another CPU
    // only the profile's nominal clock means anything.
    let same_cpu = same_arch
        && machine
            .core
            .as_ref()
            .is_none_or(|c| c.eq_ignore_ascii_case(&board.core));
    let (clock_ghz, clock_source) = match machine.max_clock_mhz {
        Some(mhz) if same_cpu => (mhz / 1000.0, "cpufreq"),
        _ => (board.clock_ghz, "profile"),
    };
    if let Some(mhz) = machine.max_clock_mhz
        && same_arch
        && mhz / 1000.0 < 0.9 * board.clock_ghz
    {
        warnings.push(format!(
            "the CPU's maximum clock is {:.2} GHz, below the {:.2} GHz of the `{name}` profile (underclocked, or capped by the firmware)",
            mhz / 1000.0,
            board.clock_ghz
        ));
    }
    let check = BoardCheck {
        name: board.name.clone(),
        title: board.title.clone(),
        clock_ghz,
        clock_source: clock_source.to_string(),
        peak_gmacs: board.peak_gmacs_at(precision, threads, clock_ghz),
        matches: warnings.is_empty(),
    };
    (check, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pi4_machine() -> Machine {
        Machine {
            host: "pi".into(),
            cpu: "Raspberry Pi 4 Model B Rev 1.4".into(),
            core: Some("Cortex-A72".into()),
            arch: "aarch64".into(),
            cores: 4,
            features: vec!["neon".into()],
            governor: Some("performance".into()),
            clock_mhz: Some(1800.0),
            max_clock_mhz: Some(1800.0),
            temperature_c: Some(50.0),
            throttling: Some(vec![]),
        }
    }

    #[test]
    fn a_pi4_matches_its_profile_and_its_clock_sets_the_peak() {
        let board = Board::builtin("rpi4").unwrap();
        let mut m = pi4_machine();
        m.max_clock_mhz = Some(1500.0);
        let (check, warnings) = check(&board, &m, Precision::F32, 4);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(check.matches);
        assert_eq!(check.clock_source, "cpufreq");
        assert!((check.peak_gmacs - 4.0 * 1.5 * 4.0).abs() < 1e-9);
    }

    #[test]
    fn differences_are_named() {
        let board = Board::builtin("rpi4").unwrap();
        let mut m = pi4_machine();
        m.cores = 2;
        m.features.push("dotprod".into());
        m.core = Some("Cortex-A76".into());
        m.max_clock_mhz = Some(1200.0);
        let (check, warnings) = check(&board, &m, Precision::I8, 4);
        let all = warnings.join("\n");
        assert!(
            all.contains("2 cores here, 4 on the `rpi4` profile"),
            "{all}"
        );
        assert!(all.contains("this CPU has dotprod"), "{all}");
        assert!(all.contains("the CPU is a Cortex-A76"), "{all}");
        assert!(
            all.contains("maximum clock is 1.20 GHz, below the 1.50"),
            "{all}"
        );
        assert!(!check.matches);
        assert_eq!(check.clock_source, "profile");
        let (_, warnings) = check_x86(&board);
        assert!(warnings[0].contains("is for aarch64"), "{warnings:?}");
    }

    #[test]
    fn an_x86_profile_of_another_vendor_is_named() {
        let board = Board::builtin("host").unwrap();
        let mut m = pi4_machine();
        m.arch = "x86_64".into();
        m.core = None;
        m.cores = board.cores;
        m.features = board.cpu.features.clone();
        m.max_clock_mhz = None;
        m.cpu = "Intel(R) Xeon(R) Processor".into();
        let (found, warnings) = check(&board, &m, Precision::F32, 1);
        let all = warnings.join("\n");
        assert!(
            all.contains(
                "the CPU is an Intel(R) Xeon(R) Processor, the `host` profile describes an AMD"
            ),
            "{all}"
        );
        assert!(!found.matches);
        m.cpu = board.soc.clone();
        let (_, warnings) = check(&board, &m, Precision::F32, 1);
        assert!(
            !warnings.iter().any(|w| w.contains("describes")),
            "{warnings:?}"
        );
    }

    #[test]
    fn the_host_profile_describes_the_machine_it_runs_on() {
        let file = Board::builtin("host").unwrap();
        let mut m = pi4_machine();
        m.arch = "x86_64".into();
        m.core = None;
        m.cores = 3;
        m.max_clock_mhz = None;
        m.clock_mhz = None;
        m.cpu = "AMD EPYC".into();
        m.features = vec!["avx".into(), "avx2".into(), "fma".into()];
        let host = for_this_machine(file.clone(), &m);
        let (found, warnings) = check(&host, &m, Precision::I8, 2);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(found.matches && host.title.contains("AMD EPYC, 3 cores"));
        assert_eq!(host.cpu.features, m.features);
        assert!(host.cpu.lacks.contains(&"avx512f".to_string()));
        // Lanes of 8 (one or two pipes, as this CPU splits them or not);
        // int8 through 16-bit pairs. The clock stays the file's when the
        // system reports none.
        let pipes = host.peak.f32_macs_per_cycle / 8;
        assert!(pipes == 1 || pipes == 2, "{:?}", host.peak);
        assert_eq!(host.peak.i8_macs_per_cycle, pipes * 16);
        let i8_peak = f64::from(host.peak.i8_macs_per_cycle) * file.clock_ghz * 2.0;
        assert!((found.peak_gmacs - i8_peak).abs() < 1e-9);
        m.features.extend(["avx512f".into(), "avx512vnni".into()]);
        m.max_clock_mhz = Some(3000.0);
        let host = for_this_machine(file, &m);
        let pipes = host.peak.f32_macs_per_cycle / 16;
        assert_eq!(
            (host.peak.i8_macs_per_cycle, host.clock_ghz),
            (pipes * 64, 3.0)
        );
        // A board's profile is the board's, whatever runs the benchmark.
        let pi = Board::builtin("rpi4").unwrap();
        assert_eq!(for_this_machine(pi.clone(), &m), pi);
    }

    #[test]
    fn zen_cores_that_split_their_widest_vectors_are_known() {
        let cpu = |vendor: &str, family: u32, model: u32| {
            format!(
                "processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model}\n"
            )
        };
        let avx2: Vec<String> = vec!["avx2".into(), "fma".into()];
        let avx512: Vec<String> = vec!["avx2".into(), "avx512f".into()];
        // Zen 1 splits AVX2; Zen 2 does not; Zen 4 splits AVX-512; Zen 3
        // has none to split; Intel is not AMD.
        assert!(splits_widest_vectors(&cpu("AuthenticAMD", 23, 1), &avx2));
        assert!(!splits_widest_vectors(&cpu("AuthenticAMD", 23, 49), &avx2));
        assert!(splits_widest_vectors(&cpu("AuthenticAMD", 25, 17), &avx512));
        assert!(!splits_widest_vectors(&cpu("AuthenticAMD", 25, 1), &avx2));
        assert!(!splits_widest_vectors(
            &cpu("GenuineIntel", 6, 143),
            &avx512
        ));
        assert!(!splits_widest_vectors("", &avx512));
    }

    fn check_x86(board: &Board) -> (BoardCheck, Vec<String>) {
        let mut m = pi4_machine();
        m.arch = "x86_64".into();
        m.core = None;
        check(board, &m, Precision::F32, 4)
    }
}
