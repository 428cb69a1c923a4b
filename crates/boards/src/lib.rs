//! Board profiles (`boards/*.toml`): what to build for a board (target triple,
//! linker, `target-cpu`), what its CPU offers (features, cores, clock) and its
//! peak multiply-accumulate throughput, so reports can show a share of peak.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Errors finding or reading a profile.
#[derive(Debug, thiserror::Error)]
pub enum BoardError {
    /// No profile by that name.
    #[error("no board named `{name}`; known boards: {known}")]
    Unknown {
        /// The name asked for.
        name: String,
        /// The names available.
        known: String,
    },
    /// The profile could not be read.
    #[error("cannot read board profile {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The profile is malformed.
    #[error("board profile {path} is invalid: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// One board.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Board {
    /// Short name, the file stem (`rpi4`).
    pub name: String,
    /// Full name.
    pub title: String,
    /// System on chip.
    pub soc: String,
    /// CPU core type.
    pub core: String,
    /// CPU cores.
    pub cores: usize,
    /// Stock maximum clock in GHz.
    pub clock_ghz: f64,
    /// RAM sizes sold, MiB.
    pub ram_mib: Vec<u64>,
    /// Operating system the profile assumes.
    pub os: String,
    /// How to cross-build for it.
    pub build: Build,
    /// CPU features.
    pub cpu: Cpu,
    /// Peak throughput per core.
    pub peak: Peak,
    /// Deployment settings.
    pub deploy: Deploy,
}

/// How to build for a board.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Build {
    /// Rust target triple.
    pub target: String,
    /// Cross linker command.
    pub linker: String,
    /// Debian package providing the linker.
    pub linker_package: String,
    /// `-C target-cpu` value.
    pub target_cpu: String,
    /// A second target for 32-bit operating systems.
    #[serde(default)]
    pub alt_target: Option<String>,
    /// Its linker.
    #[serde(default)]
    pub alt_linker: Option<String>,
    /// Debian package providing it.
    #[serde(default)]
    pub alt_linker_package: Option<String>,
}

/// CPU features that matter to the kernels.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Cpu {
    /// Features the board has (names as `is_*_feature_detected!` spells them).
    pub features: Vec<String>,
    /// Features it lacks.
    pub lacks: Vec<String>,
    /// Output channels tract's matrix kernels compute at once on this CPU:
    /// pruned channel counts are rounded to multiples of it.
    pub channel_multiple: usize,
}

/// Peak multiply-accumulates per cycle and core.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Peak {
    /// fp32 fused multiply-adds per cycle and core.
    pub f32_macs_per_cycle: u32,
    /// int8 multiply-accumulates per cycle and core.
    pub i8_macs_per_cycle: u32,
    /// Where the figures come from.
    pub note: String,
}

/// Deployment settings.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Deploy {
    /// Default SSH user.
    pub user: String,
    /// Where releases go on the device.
    pub service_dir: String,
    /// How the board is flashed.
    pub flash: String,
}

/// The profiles compiled in, by name (kept equal to `boards/*.toml` by a test).
const BUILTIN: &[(&str, &str)] = &[
    ("host", include_str!("../../../boards/host.toml")),
    (
        "jetson-nano",
        include_str!("../../../boards/jetson-nano.toml"),
    ),
    (
        "jetson-orin-nano",
        include_str!("../../../boards/jetson-orin-nano.toml"),
    ),
    ("rpi3", include_str!("../../../boards/rpi3.toml")),
    ("rpi4", include_str!("../../../boards/rpi4.toml")),
    ("rpi5", include_str!("../../../boards/rpi5.toml")),
    ("zero2w", include_str!("../../../boards/zero2w.toml")),
];

/// Element type of a throughput figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// 32-bit float.
    F32,
    /// 8-bit integer.
    I8,
    /// 16-bit float: twice the f32 lanes where the CPU has half-precision
    /// arithmetic (`fp16` among its features), else emulated.
    F16,
}

impl Board {
    /// Reads one profile file.
    pub fn load(path: &Path) -> Result<Board, BoardError> {
        let text = std::fs::read_to_string(path).map_err(|source| BoardError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        Board::parse(&text, stem).map_err(|message| BoardError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }

    fn parse(text: &str, stem: &str) -> Result<Board, String> {
        let board: Board = toml::from_str(text).map_err(|e| e.to_string())?;
        if board.name != stem {
            return Err(format!(
                "`name` is `{}` but the file is `{stem}.toml`",
                board.name
            ));
        }
        if board.cores == 0 || board.clock_ghz.is_nan() || board.clock_ghz <= 0.0 {
            return Err("cores and clock_ghz must be positive".into());
        }
        if board.cpu.channel_multiple == 0 {
            return Err("cpu.channel_multiple must be at least 1".into());
        }
        if board.peak.f32_macs_per_cycle == 0 || board.peak.i8_macs_per_cycle == 0 {
            return Err("peak MACs per cycle must be positive".into());
        }
        Ok(board)
    }

    /// A profile compiled into the binary (the `boards/` folder as it was at
    /// build time), so tools on a board need no checkout.
    pub fn builtin(name: &str) -> Result<Board, BoardError> {
        match BUILTIN.iter().find(|(n, _)| *n == name) {
            Some((stem, text)) => Board::parse(text, stem).map_err(|message| BoardError::Invalid {
                path: PathBuf::from(format!("boards/{stem}.toml (built in)")),
                message,
            }),
            None => Err(BoardError::Unknown {
                name: name.to_string(),
                known: BUILTIN
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// A board by profile path (`*.toml`), by name in `./boards/` (edited
    /// profiles win), or by name among the built-in profiles.
    pub fn resolve(name_or_path: &str) -> Result<Board, BoardError> {
        let path = Path::new(name_or_path);
        if path.extension().is_some_and(|e| e == "toml") {
            return Board::load(path);
        }
        let local = Path::new("boards").join(format!("{name_or_path}.toml"));
        if local.is_file() {
            return Board::load(&local);
        }
        Board::builtin(name_or_path)
    }

    /// Finds `name` among the profiles in `dir`.
    pub fn find(dir: &Path, name: &str) -> Result<Board, BoardError> {
        let path = dir.join(format!("{name}.toml"));
        if path.is_file() {
            return Board::load(&path);
        }
        let known = Board::names(dir).join(", ");
        Err(BoardError::Unknown {
            name: name.to_string(),
            known: if known.is_empty() {
                "none".into()
            } else {
                known
            },
        })
    }

    /// The profile names in `dir`, sorted.
    pub fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let p = e.path();
                (p.extension()? == "toml").then(|| p.file_stem()?.to_str().map(str::to_string))?
            })
            .collect();
        names.sort();
        names
    }

    /// Peak giga-MACs per second of `cores` cores at the stock clock.
    pub fn peak_gmacs(&self, precision: Precision, cores: usize) -> f64 {
        self.peak_gmacs_at(precision, cores, self.clock_ghz)
    }

    /// Peak giga-MACs per second of `cores` cores at `clock_ghz` (the clock
    /// the running CPU reports, which may differ from the profile's).
    pub fn peak_gmacs_at(&self, precision: Precision, cores: usize, clock_ghz: f64) -> f64 {
        let per_cycle = match precision {
            Precision::F32 => self.peak.f32_macs_per_cycle,
            Precision::I8 => self.peak.i8_macs_per_cycle,
            Precision::F16 if self.cpu.features.iter().any(|f| f == "fp16") => {
                2 * self.peak.f32_macs_per_cycle
            }
            Precision::F16 => self.peak.f32_macs_per_cycle,
        };
        per_cycle as f64 * clock_ghz * cores.min(self.cores) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boards_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../boards")
    }

    #[test]
    fn every_profile_loads_and_the_required_boards_exist() {
        let names = Board::names(&boards_dir());
        for required in [
            "host",
            "jetson-nano",
            "jetson-orin-nano",
            "rpi3",
            "rpi4",
            "rpi5",
            "zero2w",
        ] {
            assert!(names.iter().any(|n| n == required), "missing {required}");
        }
        for name in &names {
            let board = Board::find(&boards_dir(), name).unwrap();
            assert!(
                board.peak.i8_macs_per_cycle >= board.peak.f32_macs_per_cycle,
                "{name}"
            );
            if board.build.target.starts_with("aarch64") {
                // On these cores SDOT gives 4x the fp32 rate, SMLAL 2x.
                let has_dotprod = board.cpu.features.iter().any(|f| f == "dotprod");
                let ratio = if has_dotprod { 4 } else { 2 };
                assert_eq!(
                    board.peak.i8_macs_per_cycle,
                    ratio * board.peak.f32_macs_per_cycle,
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn built_in_profiles_are_the_files() {
        let names = Board::names(&boards_dir());
        let builtin: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, builtin);
        for name in &names {
            assert_eq!(
                Board::builtin(name).unwrap(),
                Board::find(&boards_dir(), name).unwrap()
            );
        }
        let err = Board::resolve("rpi9").unwrap_err().to_string();
        assert!(err.contains("known boards: host, jetson-nano"), "{err}");
    }

    #[test]
    fn peak_of_a_pi4_core() {
        let pi4 = Board::find(&boards_dir(), "rpi4").unwrap();
        assert!((pi4.peak_gmacs(Precision::F32, 1) - 6.0).abs() < 1e-9);
        assert!(
            (pi4.peak_gmacs(Precision::I8, 8) - 48.0).abs() < 1e-9,
            "capped at 4 cores"
        );
    }

    #[test]
    fn unknown_board_lists_the_known_ones() {
        let err = Board::find(&boards_dir(), "rpi9").unwrap_err().to_string();
        assert!(
            err.starts_with("no board named `rpi9`; known boards: host, jetson-nano"),
            "{err}"
        );
    }
}
