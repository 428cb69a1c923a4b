//! `edge-deploy`: from the workspace to a running detector on a board.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use edgewise_boards::Board;
use edgewise_deploy::build::{self, BuildTarget};
use edgewise_deploy::{bundle, push};

/// Cross-build for a board, bundle a release, and push it to devices over
/// SSH with a health check and rollback.
#[derive(Parser)]
#[command(name = "edge-deploy", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Cross-compile edge-run and edge-bench for boards.
    Build {
        /// Board profiles (`rpi4`, or a path to a profile file); repeat for several.
        #[arg(long = "board", required = true)]
        boards: Vec<String>,
        /// Build the board's other target (`armv7-unknown-linux-gnueabihf` for a
        /// 32-bit OS) instead of its main one; with one board.
        #[arg(long)]
        target: Option<String>,
        /// The Edgewise source tree to build.
        #[arg(long, default_value_os_t = default_workspace())]
        workspace: PathBuf,
        /// Build edge-run with GStreamer (`edge-run --source`: cameras,
        /// video files, RTSP), linked against the board's GStreamer.
        #[arg(long)]
        gstreamer: bool,
        /// With --gstreamer: a copy of the board's root filesystem holding
        /// its GStreamer development files (default: this machine's
        /// multiarch folders, such as /usr/lib/aarch64-linux-gnu).
        #[arg(long, requires = "gstreamer", value_name = "DIR")]
        sysroot: Option<PathBuf>,
    },
    /// Pack a board's build, a model and its self-test into a release archive.
    Bundle {
        #[command(flatten)]
        board: BoardArg,
        /// The model's manifest (`models/ppocr_v4_det.toml`).
        #[arg(long)]
        model: PathBuf,
        /// Rules on output pins for the service (`edge-run --actions`).
        #[arg(long)]
        actions: Option<PathBuf>,
        /// Images the board's health check runs on (repeat for several).
        #[arg(long = "selftest-image", required = true)]
        selftest_images: Vec<PathBuf>,
        /// Fixed input size for the service (`HxW`), instead of the manifest's rule.
        #[arg(long)]
        input_size: Option<String>,
        /// The service reads this stream instead of watching a folder for
        /// images: a camera (`/dev/video0`), a video file, an `rtsp://`
        /// URL or a GStreamer pipeline ending in an appsink, as on the
        /// board (`edge-run --source`; the board's build needs
        /// `edge-deploy build --gstreamer`).
        #[arg(long, value_name = "SRC")]
        source: Option<String>,
        /// Threads on the board (default: all its cores).
        #[arg(long)]
        threads: Option<usize>,
        /// How a QDQ (INT8) model runs (`float`, `integer`, `integer-tract`).
        #[arg(long)]
        qdq: Option<String>,
        /// Where the board's binaries are (default: where `build` puts them).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// The Edgewise source tree (for the default --bin-dir).
        #[arg(long, default_value_os_t = default_workspace())]
        workspace: PathBuf,
        /// Folder for the archive.
        #[arg(short, long, default_value = "target/bundles")]
        out: PathBuf,
    },
    /// Install a bundle as a new release on devices and restart their service.
    Push {
        /// The bundle archive.
        bundle: PathBuf,
        #[command(flatten)]
        hosts: Hosts,
        /// Releases kept on each device, the new one included.
        #[arg(long, default_value_t = 3)]
        keep: usize,
        /// Seconds the service must stay up before the health check.
        #[arg(long, default_value_t = 3)]
        settle: u32,
        #[command(flatten)]
        ssh: SshArgs,
    },
    /// Write a release into an SD-card image (no mounting), so the board runs
    /// it on first boot; optionally write the image to a card.
    Flash {
        /// The operating system image (Raspberry Pi OS Lite, ...).
        #[arg(long)]
        image: PathBuf,
        /// The release bundle.
        #[arg(long)]
        bundle: PathBuf,
        /// Where the flashed image goes (default: the image itself, replaced
        /// only once the flashing has succeeded).
        #[arg(short, long)]
        out: Option<PathBuf>,
        /// The board's host name.
        #[arg(long)]
        hostname: Option<String>,
        /// A public key for the service's user (`~/.ssh/id_ed25519.pub`).
        #[arg(long)]
        authorized_key: Option<PathBuf>,
        /// Then write the image to this card (`/dev/sdX`, `/dev/mmcblk0`).
        #[arg(long)]
        device: Option<PathBuf>,
        /// Write to --device even if it is mounted or holds the system.
        #[arg(long, requires = "device")]
        force: bool,
    },
    /// Which release runs on a device.
    Status {
        #[command(flatten)]
        board: BoardArg,
        /// The device (`user@host`).
        #[arg(long)]
        host: String,
        #[command(flatten)]
        ssh: SshArgs,
    },
    /// Run edge-bench on a device and bring its JSON report home.
    Bench {
        #[command(flatten)]
        board: BoardArg,
        /// The device (`user@host`).
        #[arg(long)]
        host: String,
        /// Where the report goes.
        #[arg(short, long)]
        out: PathBuf,
        #[command(flatten)]
        ssh: SshArgs,
        /// More edge-bench options (after `--`).
        #[arg(last = true)]
        bench_args: Vec<String>,
    },
}

#[derive(Args)]
struct BoardArg {
    /// The board profile (`rpi4`, or a path to a profile file).
    #[arg(long)]
    board: String,
    /// The board's other target (its 32-bit one).
    #[arg(long)]
    target: Option<String>,
}

#[derive(Args)]
#[group(required = true, multiple = false)]
struct Hosts {
    /// One device (`user@host`, or a Host of ~/.ssh/config).
    #[arg(long)]
    host: Option<String>,
    /// A fleet: a file with one device per line, deployed in parallel.
    #[arg(long)]
    hosts: Option<PathBuf>,
}

#[derive(Args)]
struct SshArgs {
    /// An SSH configuration file instead of ~/.ssh/config (`ssh -F`).
    #[arg(long)]
    ssh_config: Option<PathBuf>,
    /// An SSH option (`ssh -o KEY=VALUE`); repeat for several.
    #[arg(long = "ssh-option", value_name = "KEY=VALUE")]
    ssh_options: Vec<String>,
}

impl SshArgs {
    fn options(&self) -> Vec<String> {
        let mut options = Vec::new();
        if let Some(config) = &self.ssh_config {
            options.push("-F".into());
            options.push(config.display().to_string());
        }
        for option in &self.ssh_options {
            options.push("-o".into());
            options.push(option.clone());
        }
        options
    }
}

/// The source tree this binary was built from, when it is still there;
/// else the current folder.
fn default_workspace() -> PathBuf {
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    if built_from.join("Cargo.toml").is_file() {
        built_from.canonicalize().unwrap_or(built_from)
    } else {
        PathBuf::from(".")
    }
}

fn board_target(board: &BoardArg) -> Result<(Board, BuildTarget)> {
    let profile = Board::resolve(&board.board)?;
    let target = BuildTarget::for_board(&profile, board.target.as_deref())?;
    Ok((profile, target))
}

/// The `edge-run` built for this machine beside this binary.
fn host_edge_run() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating edge-deploy")?;
    let path = exe.with_file_name("edge-run");
    if !path.is_file() {
        bail!(
            "{} is missing: the self-test is recorded with this machine's edge-run; build it with `cargo build --release`",
            path.display()
        );
    }
    Ok(path)
}

fn run(cli: Cli) -> Result<bool> {
    match cli.command {
        Command::Build {
            boards,
            target,
            workspace,
            gstreamer,
            sysroot,
        } => {
            if target.is_some() && boards.len() > 1 {
                bail!("--target picks one board's other target: give one --board with it");
            }
            if sysroot.is_some() && boards.len() > 1 {
                bail!("--sysroot is one board's root filesystem: give one --board with it");
            }
            let mut targets = Vec::new();
            for name in &boards {
                let board = Board::resolve(name)?;
                let mut built = BuildTarget::for_board(&board, target.as_deref())?;
                built.gstreamer = gstreamer.then(|| build::GstreamerLibs {
                    sysroot: sysroot.clone(),
                });
                targets.push(built);
            }
            for t in &targets {
                eprintln!(
                    "edge-deploy: building for {} ({}, {})",
                    t.board,
                    t.triple,
                    t.rustflags()?
                );
            }
            for built in build::build(&workspace, &targets)? {
                println!(
                    "{} ({}): {} in {:.0} s",
                    built.target.board,
                    built.target.triple,
                    built.bin_dir.display(),
                    built.seconds
                );
            }
            Ok(true)
        }
        Command::Bundle {
            board,
            model,
            actions,
            selftest_images,
            input_size,
            source,
            threads,
            qdq,
            bin_dir,
            workspace,
            out,
        } => {
            let (profile, mut target) = board_target(&board)?;
            // A stream service runs the board's build with GStreamer.
            target.gstreamer = source.as_ref().map(|_| build::GstreamerLibs::default());
            let mut run_args = vec![
                "--threads".to_string(),
                threads.unwrap_or(profile.cores).to_string(),
            ];
            if let Some(size) = input_size {
                run_args.extend(["--input-size".into(), size]);
            }
            if let Some(mode) = qdq {
                run_args.extend(["--qdq".into(), mode]);
            }
            let spec = bundle::Spec {
                bin_dir: bin_dir.unwrap_or_else(|| build::bin_dir(&workspace, &target)),
                board: profile,
                target,
                manifest: model,
                actions,
                selftest_images,
                run_args,
                source,
                host_edge_run: host_edge_run()?,
                out_dir: out,
            };
            let made = bundle::create(&spec)?;
            println!(
                "{}: release {} for {} ({}), {:.1} MiB",
                made.path.display(),
                made.release.id,
                made.release.board,
                made.release.target,
                made.bytes as f64 / (1 << 20) as f64
            );
            Ok(true)
        }
        Command::Push {
            bundle: path,
            hosts,
            keep,
            settle,
            ssh,
        } => {
            let targets = match (&hosts.host, &hosts.hosts) {
                (Some(host), _) => vec![host.clone()],
                (None, Some(file)) => {
                    let text = std::fs::read_to_string(file)
                        .with_context(|| format!("reading the fleet file {}", file.display()))?;
                    let hosts = push::read_hosts(&text);
                    if hosts.is_empty() {
                        bail!("the fleet file {} names no host", file.display());
                    }
                    hosts
                }
                (None, None) => unreachable!("clap requires --host or --hosts"),
            };
            for host in &targets {
                edgewise_deploy::ssh::Ssh::new(host, vec![])?;
            }
            let bundle = bundle::open(&path)?;
            let options = push::Options {
                keep,
                settle_secs: settle,
                ssh_options: ssh.options(),
            };
            eprintln!(
                "edge-deploy: pushing release {} ({} for {}) to {} device(s)",
                bundle.release.id,
                bundle.release.model,
                bundle.release.board,
                targets.len()
            );
            let results = push::push_all(&bundle, &targets, &options);
            let mut all_ok = true;
            for (host, result) in targets.iter().zip(&results) {
                match result {
                    Ok(done) => {
                        let removed = if done.removed.is_empty() {
                            String::new()
                        } else {
                            format!("; removed {}", done.removed.join(", "))
                        };
                        println!(
                            "{host}: ok, running {} ({:.1} s{}){removed}",
                            done.release,
                            done.seconds,
                            if done.uploaded {
                                ""
                            } else {
                                ", already uploaded"
                            }
                        );
                    }
                    Err(failed) => {
                        all_ok = false;
                        println!("{host}: FAILED ({:?}) at {}", failed.outcome, failed.step);
                        eprintln!("{failed}");
                    }
                }
            }
            Ok(all_ok)
        }
        Command::Flash {
            image,
            bundle: path,
            out,
            hostname,
            authorized_key,
            device,
            force,
        } => {
            let spec = edgewise_deploy::flash::Spec {
                out: out.unwrap_or_else(|| image.clone()),
                image,
                bundle: bundle::open(&path)?,
                hostname,
                authorized_key,
            };
            let flashed = edgewise_deploy::flash::flash(&spec)?;
            println!(
                "{}: release {} installed ({} files), {} enabled{}",
                flashed.out.display(),
                spec.bundle.release.id,
                flashed.files,
                edgewise_deploy::unit::SERVICE,
                if flashed.ssh_enabled {
                    ", SSH on at first boot"
                } else {
                    ""
                }
            );
            if let Some(device) = device {
                let bytes = edgewise_deploy::flash::write_to_device(&flashed.out, &device, force)?;
                println!(
                    "{}: {:.0} MiB written",
                    device.display(),
                    bytes as f64 / (1 << 20) as f64
                );
            }
            Ok(true)
        }
        Command::Status { board, host, ssh } => {
            let (profile, _) = board_target(&board)?;
            let state = push::status(&host, &profile.deploy.service_dir, &ssh.options())?;
            println!("{host}: {state}");
            Ok(true)
        }
        Command::Bench {
            board,
            host,
            out,
            ssh,
            bench_args,
        } => {
            let (profile, _) = board_target(&board)?;
            let mut args = vec!["--board".to_string(), profile.name.clone()];
            args.extend(bench_args);
            let report = push::bench(&host, &profile.deploy.service_dir, &args, &ssh.options())?;
            edgewise_deploy::write_atomically(&out, report.as_bytes())?;
            println!("{host}: edge-bench report in {}", out.display());
            Ok(true)
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("edge-deploy: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
