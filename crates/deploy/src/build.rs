//! Cross-building `edge-run` and `edge-bench` for a board: its target triple,
//! linker and `target-cpu` from `boards/*.toml`, each board in its own target
//! folder (`target/boards/<board>`) because a `target-cpu` change rebuilds
//! everything.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use edgewise_boards::Board;

use crate::DeployError;

/// The binaries a board runs.
pub const BINARIES: [&str; 2] = ["edge-run", "edge-bench"];

/// The Cargo profile of board builds: release, stripped (tract's binaries
/// are about five times smaller without symbols).
pub const PROFILE: &str = "deploy";

/// One target of one board: what `cargo build` needs to cross-compile for it.
#[derive(Clone, Debug, PartialEq)]
pub struct BuildTarget {
    /// The board's profile name.
    pub board: String,
    /// Rust target triple.
    pub triple: String,
    /// Cross linker command.
    pub linker: String,
    /// Debian package that provides the linker.
    pub linker_package: String,
    /// `-C target-cpu`.
    pub target_cpu: String,
    /// Features the board's CPU lacks: switched off where `target_cpu`
    /// would enable them (LLVM's Cortex-A72 includes the crypto extension,
    /// which the Pi 4's BCM2711 does not have).
    pub lacks: Vec<String>,
    /// Built with `edge-run --source` (the `gstreamer` feature), against
    /// the board's GStreamer libraries.
    pub gstreamer: Option<GstreamerLibs>,
}

/// Where the board's GStreamer development files are found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GstreamerLibs {
    /// A copy of the board's root filesystem holding them (its
    /// `/usr/lib/<multiarch>`); `None`: this machine's own multiarch
    /// folders (`/usr/lib/aarch64-linux-gnu`).
    pub sysroot: Option<PathBuf>,
}

/// The `.pc` files the `gstreamer` feature links against (from Debian's
/// libgstreamer1.0-dev and libgstreamer-plugins-base1.0-dev).
const GSTREAMER_PC: [&str; 3] = ["gstreamer-1.0", "gstreamer-app-1.0", "gstreamer-video-1.0"];

/// Debian's multiarch folder and architecture name for a Rust triple.
fn debian_arch(triple: &str) -> Option<(&'static str, &'static str)> {
    let arch = triple.split('-').next()?;
    match arch {
        "aarch64" => Some(("aarch64-linux-gnu", "arm64")),
        "x86_64" => Some(("x86_64-linux-gnu", "amd64")),
        _ if arch.starts_with("arm") && triple.ends_with("gnueabihf") => {
            Some(("arm-linux-gnueabihf", "armhf"))
        }
        _ => None,
    }
}

impl BuildTarget {
    /// The board's build for `triple`: its main target when `None`, or its
    /// 32-bit alternative when named.
    pub fn for_board(board: &Board, triple: Option<&str>) -> Result<BuildTarget, DeployError> {
        let build = &board.build;
        let (triple, linker, package) = match triple {
            None => (&build.target, &build.linker, &build.linker_package),
            Some(t) if t == build.target => (&build.target, &build.linker, &build.linker_package),
            Some(t) if build.alt_target.as_deref() == Some(t) => (
                build.alt_target.as_ref().unwrap(),
                build.alt_linker.as_ref().unwrap_or(&build.linker),
                build
                    .alt_linker_package
                    .as_ref()
                    .unwrap_or(&build.linker_package),
            ),
            Some(t) => {
                let mut known = vec![build.target.clone()];
                known.extend(build.alt_target.clone());
                return Err(DeployError::UnknownTarget {
                    board: board.name.clone(),
                    triple: t.to_string(),
                    known: known.join(", "),
                });
            }
        };
        Ok(BuildTarget {
            board: board.name.clone(),
            triple: triple.clone(),
            linker: linker.clone(),
            linker_package: package.clone(),
            target_cpu: build.target_cpu.clone(),
            lacks: board.cpu.lacks.clone(),
            gstreamer: None,
        })
    }

    /// Whether it builds for another architecture than this machine's.
    pub fn is_cross(&self) -> bool {
        self.triple.split('-').next() != Some(std::env::consts::ARCH)
    }

    /// The copy of the board's root filesystem GStreamer comes from, if
    /// any.
    fn sysroot(&self) -> Option<&Path> {
        self.gstreamer.as_ref()?.sysroot.as_deref()
    }

    /// The folder of the board's `.pc` files and the folder of its
    /// libraries, with the `gstreamer` feature.
    fn gstreamer_dirs(&self) -> Option<(PathBuf, PathBuf)> {
        self.gstreamer.as_ref()?;
        let (multiarch, _) = debian_arch(&self.triple)?;
        let lib = self
            .sysroot()
            .unwrap_or(Path::new("/"))
            .join("usr/lib")
            .join(multiarch);
        Some((lib.join("pkgconfig"), lib))
    }

    /// Environment for the `pkg-config` crate to find the board's
    /// GStreamer rather than this machine's.
    pub fn pkg_config_env(&self) -> Vec<(String, String)> {
        let Some((pc, _)) = self.gstreamer_dirs() else {
            return vec![];
        };
        let suffix = self.triple.replace('-', "_");
        let libdir = |dirs: String| (format!("PKG_CONFIG_LIBDIR_{suffix}"), dirs);
        let allow_cross = ("PKG_CONFIG_ALLOW_CROSS".to_string(), "1".to_string());
        match self.sysroot() {
            // This machine's own GStreamer: pkg-config as it is.
            None if !self.is_cross() => vec![],
            None => vec![allow_cross, libdir(pc.display().to_string())],
            Some(root) => vec![
                allow_cross,
                libdir(format!(
                    "{}:{}",
                    pc.display(),
                    root.join("usr/share/pkgconfig").display()
                )),
                (
                    format!("PKG_CONFIG_SYSROOT_DIR_{suffix}"),
                    root.display().to_string(),
                ),
            ],
        }
    }

    /// The `CARGO_TARGET_<TRIPLE>_` prefix of Cargo's per-target settings.
    fn env_prefix(&self) -> String {
        format!(
            "CARGO_TARGET_{}_",
            self.triple.to_uppercase().replace(['-', '.'], "_")
        )
    }

    /// Flags for rustc: the CPU, minus the features it lacks that the CPU
    /// model would otherwise switch on.
    pub fn rustflags(&self) -> Result<String, DeployError> {
        let enabled = enabled_features(&self.triple, &self.target_cpu)?;
        let mut flags = format!("-C target-cpu={}", self.target_cpu);
        let off: Vec<String> = self
            .lacks
            .iter()
            .filter(|f| enabled.contains(f))
            .map(|f| format!("-{f}"))
            .collect();
        if !off.is_empty() {
            flags.push_str(&format!(" -C target-feature={}", off.join(",")));
        }
        if let Some((_, lib)) = self.gstreamer_dirs() {
            // GStreamer's own dependencies (GLib, libdw...) are found beside
            // it, or in /lib/<multiarch> (Debian 12 keeps some there).
            let mut dirs = vec![lib.clone()];
            if let Some(root) = self.sysroot() {
                flags.push_str(&format!(" -C link-arg=--sysroot={}", root.display()));
                dirs.push(
                    root.join("lib")
                        .join(lib.file_name().expect("a multiarch name")),
                );
            }
            let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
            flags.push_str(&format!(" -C link-arg=-Wl,-rpath-link,{}", dirs.join(":")));
        }
        Ok(flags)
    }
}

/// Target features rustc enables for `triple` on `cpu`.
fn enabled_features(triple: &str, cpu: &str) -> Result<Vec<String>, DeployError> {
    let output = Command::new("rustc")
        .args(["--print", "cfg", "--target", triple])
        .arg(format!("-Ctarget-cpu={cpu}"))
        .output()
        .map_err(|e| DeployError::Tool {
            tool: "rustc".into(),
            message: e.to_string(),
        })?;
    if !output.status.success() {
        return Err(DeployError::Tool {
            tool: "rustc".into(),
            message: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("target_feature=\""))
        .map(|f| f.trim_end_matches('"').to_string())
        .collect())
}

/// What is missing to build for `target`, each with the command that
/// installs it; empty when the toolchain is complete.
pub fn missing_pieces(target: &BuildTarget) -> Vec<String> {
    let mut missing = Vec::new();
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let has_std = sysroot.is_some_and(|root| {
        root.join("lib/rustlib")
            .join(&target.triple)
            .join("lib")
            .is_dir()
    });
    if !has_std {
        missing.push(format!(
            "Rust's standard library for {t}: run `rustup target add {t}`",
            t = target.triple
        ));
    }
    if !on_path(&target.linker) {
        missing.push(format!(
            "the cross linker `{}`: run `sudo apt-get install {}`",
            target.linker, target.linker_package
        ));
    }
    missing.extend(missing_gstreamer(target));
    missing
}

/// What is missing for the `gstreamer` feature on `target`: the board's
/// GStreamer development files, with how to get them.
fn missing_gstreamer(target: &BuildTarget) -> Option<String> {
    let libs = target.gstreamer.as_ref()?;
    let Some((pc, _)) = target.gstreamer_dirs() else {
        return Some(format!(
            "GStreamer for {}: Edgewise knows the Debian multiarch folders of aarch64, armv7 (gnueabihf) and x86_64 only",
            target.triple
        ));
    };
    let absent: Vec<&str> = GSTREAMER_PC
        .into_iter()
        .filter(|name| !pc.join(format!("{name}.pc")).is_file())
        .collect();
    if absent.is_empty() {
        return None;
    }
    let (_, arch) = debian_arch(&target.triple).expect("known above");
    let packages = "libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev";
    let how = match (&libs.sysroot, target.is_cross()) {
        (Some(root), _) => format!(
            "the sysroot {} lacks them: install `{packages}` on the board (or in the image) it was copied from, and copy it again",
            root.display()
        ),
        (None, false) => format!("run `sudo apt-get install {packages}`"),
        (None, true) => format!(
            "give --sysroot with a copy of the board's root filesystem that has `{packages}` installed (`rsync -a pi@board:/usr /lib sysroot/`, or a mounted OS image), or install them for {arch} here where the distribution allows it beside this machine's (`sudo dpkg --add-architecture {arch} && sudo apt-get update && sudo apt-get install {}`; Debian 12's libgstreamer-plugins-base1.0-dev cannot be installed for two architectures at once)",
            packages
                .split(' ')
                .map(|p| format!("{p}:{arch}"))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    };
    Some(format!(
        "the board's GStreamer development files ({} in {}), for the `gstreamer` feature: {how}",
        absent
            .iter()
            .map(|n| format!("{n}.pc"))
            .collect::<Vec<_>>()
            .join(", "),
        pc.display()
    ))
}

/// Whether `program` is an executable file in one of `$PATH`'s folders.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(program)).is_ok_and(|m| {
                m.is_file()
                    && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
            })
        })
    })
}

/// A finished build.
#[derive(Clone, Debug)]
pub struct Built {
    /// What was built.
    pub target: BuildTarget,
    /// The folder holding the binaries.
    pub bin_dir: PathBuf,
    /// Wall time of the build, seconds.
    pub seconds: f64,
}

impl Built {
    /// The path of one of [`BINARIES`].
    pub fn binary(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }
}

/// Where a board's builds go inside the workspace's `target/`: builds
/// with GStreamer in a folder of their own (`<board>+gstreamer`), since
/// their linker flags would rebuild everything in the other.
pub fn target_dir(workspace: &Path, target: &BuildTarget) -> PathBuf {
    let name = match target.gstreamer {
        Some(_) => format!("{}+gstreamer", target.board),
        None => target.board.clone(),
    };
    workspace.join("target").join("boards").join(name)
}

/// The folder a finished build of `target` leaves its binaries in.
pub fn bin_dir(workspace: &Path, target: &BuildTarget) -> PathBuf {
    target_dir(workspace, target)
        .join(&target.triple)
        .join(PROFILE)
}

/// Builds [`BINARIES`] for every target: one `cargo build` per board, with
/// all of that board's triples, one board after the other (side by side on
/// two cores they were slower: each build keeps the cores busy already).
/// Cargo's output is shown as it goes.
pub fn build(workspace: &Path, targets: &[BuildTarget]) -> Result<Vec<Built>, DeployError> {
    for target in targets {
        let missing = missing_pieces(target);
        if !missing.is_empty() {
            return Err(DeployError::Toolchain {
                board: target.board.clone(),
                triple: target.triple.clone(),
                missing: missing.join("\n  "),
            });
        }
    }
    let mut boards: Vec<&str> = targets.iter().map(|t| t.board.as_str()).collect();
    boards.dedup();
    let mut built = Vec::new();
    for board in boards {
        let mine: Vec<&BuildTarget> = targets.iter().filter(|t| t.board == board).collect();
        let features = if mine[0].gstreamer.is_some() {
            "edgewise-runtime/gpio,edgewise-runtime/gstreamer"
        } else {
            "edgewise-runtime/gpio"
        };
        let mut command = Command::new(std::env::var_os("CARGO").unwrap_or("cargo".into()));
        command
            .current_dir(workspace)
            .args(["build", "--profile", PROFILE, "--features", features])
            .args(["-p", "edgewise-runtime", "--bin", "edge-run"])
            .args(["-p", "edgewise-bench", "--bin", "edge-bench"])
            .arg("--target-dir")
            .arg(target_dir(workspace, mine[0]));
        for target in &mine {
            command.args(["--target", &target.triple]);
            let prefix = target.env_prefix();
            command.env(format!("{prefix}LINKER"), &target.linker);
            command.env(format!("{prefix}RUSTFLAGS"), target.rustflags()?);
            command.envs(target.pkg_config_env());
        }
        let started = Instant::now();
        let status = command.status().map_err(|e| DeployError::Tool {
            tool: "cargo".into(),
            message: e.to_string(),
        })?;
        if !status.success() {
            return Err(DeployError::Build(format!(
                "cargo failed building for {board} (its errors are above)"
            )));
        }
        let seconds = started.elapsed().as_secs_f64();
        for target in mine {
            built.push(Built {
                bin_dir: bin_dir(workspace, target),
                target: target.clone(),
                seconds,
            });
        }
    }
    Ok(built)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board(name: &str) -> Board {
        Board::builtin(name).unwrap()
    }

    #[test]
    fn a_pi4_build_keeps_the_crypto_extension_off() {
        let target = BuildTarget::for_board(&board("rpi4"), None).unwrap();
        assert_eq!(target.triple, "aarch64-unknown-linux-gnu");
        let flags = target.rustflags().unwrap();
        assert!(flags.starts_with("-C target-cpu=cortex-a72"), "{flags}");
        // LLVM's Cortex-A72 has AES and SHA2; the BCM2711 does not.
        assert!(flags.contains("-aes") && flags.contains("-sha2"), "{flags}");
        // Features the CPU model does not enable anyway are left alone.
        assert!(!flags.contains("dotprod"), "{flags}");
    }

    #[test]
    fn the_32_bit_target_of_a_pi3_uses_its_own_linker() {
        let target =
            BuildTarget::for_board(&board("rpi3"), Some("armv7-unknown-linux-gnueabihf")).unwrap();
        assert_eq!(target.linker, "arm-linux-gnueabihf-gcc");
        assert_eq!(target.linker_package, "gcc-arm-linux-gnueabihf");
        assert_eq!(
            target.env_prefix(),
            "CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_"
        );
    }

    #[test]
    fn the_gstreamer_feature_names_the_boards_libraries_and_how_to_get_them() {
        let mut target = BuildTarget::for_board(&board("rpi4"), None).unwrap();
        let root = tempfile::tempdir().unwrap();
        target.gstreamer = Some(GstreamerLibs {
            sysroot: Some(root.path().to_path_buf()),
        });
        let missing = missing_pieces(&target).join("\n");
        assert!(
            missing.contains("gstreamer-1.0.pc, gstreamer-app-1.0.pc, gstreamer-video-1.0.pc")
                && missing.contains("usr/lib/aarch64-linux-gnu/pkgconfig")
                && missing.contains("libgstreamer-plugins-base1.0-dev"),
            "{missing}"
        );
        let pc = root.path().join("usr/lib/aarch64-linux-gnu/pkgconfig");
        std::fs::create_dir_all(&pc).unwrap();
        for name in GSTREAMER_PC {
            std::fs::write(pc.join(format!("{name}.pc")), "").unwrap();
        }
        assert!(
            missing_gstreamer(&target).is_none(),
            "{:?}",
            missing_gstreamer(&target)
        );
        let env = target.pkg_config_env();
        let sysroot = root.path().display().to_string();
        assert!(env.contains(&(
            "PKG_CONFIG_SYSROOT_DIR_aarch64_unknown_linux_gnu".into(),
            sysroot.clone()
        )));
        assert!(
            env.iter()
                .any(|(k, v)| k == "PKG_CONFIG_LIBDIR_aarch64_unknown_linux_gnu"
                    && v.starts_with(&pc.display().to_string()))
        );
        let flags = target.rustflags().unwrap();
        assert!(
            flags.contains(&format!("link-arg=--sysroot={sysroot}")),
            "{flags}"
        );
        // Without a sysroot, this machine's multiarch folders, and the way
        // to fill them or to give a sysroot.
        target.gstreamer = Some(GstreamerLibs::default());
        if !Path::new("/usr/lib/aarch64-linux-gnu/pkgconfig/gstreamer-video-1.0.pc").exists() {
            let missing = missing_gstreamer(&target).unwrap();
            assert!(
                missing.contains("--sysroot") && missing.contains("dpkg --add-architecture arm64"),
                "{missing}"
            );
        }
    }

    #[test]
    fn a_target_the_board_does_not_have_is_refused_with_the_ones_it_has() {
        let err = BuildTarget::for_board(&board("rpi4"), Some("armv7-unknown-linux-gnueabihf"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("rpi4") && err.contains("aarch64-unknown-linux-gnu"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_linker_is_named_with_its_package() {
        let mut target = BuildTarget::for_board(&board("rpi4"), None).unwrap();
        target.linker = "no-such-linker-gcc".into();
        target.linker_package = "gcc-no-such".into();
        let missing = missing_pieces(&target).join("\n");
        assert!(
            missing.contains("`no-such-linker-gcc`")
                && missing.contains("apt-get install gcc-no-such"),
            "{missing}"
        );
        target.triple = "riscv64gc-unknown-none-elf".into();
        let missing = missing_pieces(&target).join("\n");
        assert!(
            missing.contains("rustup target add riscv64gc-unknown-none-elf"),
            "{missing}"
        );
    }
}
