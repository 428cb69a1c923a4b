//! A release bundle: one `.tar.gz` holding everything a board runs, under a
//! folder named by the release id:
//!
//! ```text
//! <id>/bin/edge-run, bin/edge-bench   the board's build
//! <id>/model/model.toml, model.onnx   the detector and its manifest
//! <id>/actions.toml                   rules on output pins (optional)
//! <id>/selftest/*.png, expected.jsonl images and the build machine's detections
//! <id>/run.sh, edgewise.service       how the board starts it
//! <id>/release.toml                   what this is, for which board
//! <id>/SHA256SUMS                     every file above (`sha256sum -c`)
//! ```
//!
//! The id is the Edgewise version and a hash of the contents, so the same
//! inputs give the same release; archives are reproducible byte for byte.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use edgewise_boards::Board;
use edgewise_manifest::Manifest;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::build::BuildTarget;
use crate::unit::{SERVICE, Service};
use crate::{DeployError, write_atomically};

/// The file describing a release, at the top of its folder.
pub const RELEASE_FILE: &str = "release.toml";

/// What `release.toml` says.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    /// `<edgewise version>-<12 hex digits of the contents' hash>`.
    pub id: String,
    /// The board profile it was built for.
    pub board: String,
    /// The binaries' target triple.
    pub target: String,
    /// The model's manifest name.
    pub model: String,
    /// Where it installs on the board.
    pub service_dir: String,
    /// The service's user.
    pub user: String,
    /// edge-run's options for the model.
    pub run_args: Vec<String>,
    /// The stream the service reads (`edge-run --source`); `None`: it
    /// watches its inbox folder for images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Bytes of the unpacked files.
    pub unpacked_bytes: u64,
}

/// A bundle archive on disk.
#[derive(Clone, Debug)]
pub struct Bundle {
    /// The archive.
    pub path: PathBuf,
    /// Its SHA-256, hex.
    pub sha256: String,
    /// Its size.
    pub bytes: u64,
    /// Its `release.toml`.
    pub release: Release,
}

/// What goes into a bundle.
#[derive(Clone, Debug)]
pub struct Spec {
    /// The board.
    pub board: Board,
    /// The target the binaries were built for.
    pub target: BuildTarget,
    /// The folder holding the board's `edge-run` and `edge-bench`.
    pub bin_dir: PathBuf,
    /// The model's manifest.
    pub manifest: PathBuf,
    /// Rules on output pins for `edge-run --actions`.
    pub actions: Option<PathBuf>,
    /// Images for the self-test.
    pub selftest_images: Vec<PathBuf>,
    /// edge-run's options for the model (`--input-size`, `--threads`, ...).
    pub run_args: Vec<String>,
    /// The stream the service reads, instead of its inbox folder.
    pub source: Option<String>,
    /// An `edge-run` for this machine, to record the self-test's detections.
    pub host_edge_run: PathBuf,
    /// The folder the archive goes to.
    pub out_dir: PathBuf,
}

/// One file of a release: path inside it, contents, Unix mode.
struct Entry {
    path: String,
    bytes: Vec<u8>,
    mode: u32,
}

fn read(path: &Path) -> Result<Vec<u8>, DeployError> {
    std::fs::read(path).map_err(|e| DeployError::io(path, e))
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// ELF machine numbers of the triples' architectures.
fn elf_machine(triple: &str) -> Option<u16> {
    match triple.split('-').next()? {
        "aarch64" => Some(183),
        "x86_64" => Some(62),
        arch if arch.starts_with("arm") => Some(40),
        _ => None,
    }
}

/// Checks that `bytes` is an executable for `triple`'s architecture: a
/// bundle with an x86 binary for a Pi fails here, not on the board.
fn check_binary(path: &Path, bytes: &[u8], triple: &str) -> Result<(), DeployError> {
    let machine = (bytes.len() > 20 && bytes.starts_with(b"\x7fELF"))
        .then(|| u16::from_le_bytes([bytes[18], bytes[19]]));
    if machine.is_none() || machine != elf_machine(triple) {
        return Err(DeployError::Invalid(format!(
            "{} is not a {triple} executable (ELF machine {machine:?}); build it with `edge-deploy build`",
            path.display()
        )));
    }
    Ok(())
}

/// Whether an executable loads GStreamer (its library's name is among
/// the ELF's needed libraries, so in its string table).
fn links_gstreamer(bytes: &[u8]) -> bool {
    let name = b"libgstreamer-1.0.so";
    bytes.windows(name.len()).any(|w| w == name)
}

/// Names that are safe in a file name: the rest becomes `_`.
fn file_name_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Records the detections the self-test will check: this machine's
/// `edge-run` on the self-test images, with the model as bundled.
fn record_selftest(spec: &Spec, model: &Manifest, onnx: &[u8]) -> Result<Vec<Entry>, DeployError> {
    let stage = tempfile::tempdir().map_err(|e| DeployError::io(&spec.out_dir, e))?;
    let root = stage.path();
    let mut entries = Vec::new();
    std::fs::create_dir_all(root.join("model")).map_err(|e| DeployError::io(root, e))?;
    std::fs::create_dir_all(root.join("selftest")).map_err(|e| DeployError::io(root, e))?;
    let manifest_text = toml::to_string(model).map_err(|e| DeployError::Invalid(e.to_string()))?;
    std::fs::write(root.join("model/model.toml"), &manifest_text)
        .and_then(|_| std::fs::write(root.join("model/model.onnx"), onnx))
        .map_err(|e| DeployError::io(root, e))?;
    let mut names = Vec::new();
    for image in &spec.selftest_images {
        let name = image
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| {
                let lower = n.to_ascii_lowercase();
                lower.ends_with(".png") || lower.ends_with(".jpg") || lower.ends_with(".jpeg")
            })
            .ok_or_else(|| {
                DeployError::Invalid(format!(
                    "self-test image {} must be a .png or .jpg file",
                    image.display()
                ))
            })?
            .to_string();
        if names.contains(&name) {
            return Err(DeployError::Invalid(format!(
                "two self-test images are named {name}"
            )));
        }
        let bytes = read(image)?;
        std::fs::write(root.join("selftest").join(&name), &bytes)
            .map_err(|e| DeployError::io(root, e))?;
        entries.push(Entry {
            path: format!("selftest/{name}"),
            bytes,
            mode: 0o644,
        });
        names.push(name);
    }
    let output = Command::new(&spec.host_edge_run)
        .arg(root.join("model/model.toml"))
        .arg(root.join("selftest"))
        .args(&spec.run_args)
        .output()
        .map_err(|e| DeployError::Tool {
            tool: spec.host_edge_run.display().to_string(),
            message: format!("{e}; build it with `cargo build --release`"),
        })?;
    if !output.status.success() {
        return Err(DeployError::Tool {
            tool: "edge-run".into(),
            message: format!(
                "recording the self-test failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        });
    }
    if output.stdout.iter().all(u8::is_ascii_whitespace) {
        return Err(DeployError::Invalid(format!(
            "the model detects nothing on the self-test images ({}): the health check would check nothing; choose images with --selftest-image on which it detects something",
            names.join(", ")
        )));
    }
    entries.push(Entry {
        path: "selftest/expected.jsonl".into(),
        bytes: output.stdout,
        mode: 0o644,
    });
    Ok(entries)
}

/// `SHA256SUMS` of `entries`, as `sha256sum -c` reads it.
fn checksums(entries: &[Entry]) -> String {
    entries
        .iter()
        .map(|e| format!("{}  {}\n", sha256_hex(&e.bytes), e.path))
        .collect()
}

/// Builds the bundle `spec` describes and writes it, atomically, into
/// `spec.out_dir`.
pub fn create(spec: &Spec) -> Result<Bundle, DeployError> {
    if spec.selftest_images.is_empty() {
        return Err(DeployError::Invalid(
            "a bundle needs at least one self-test image (--selftest-image): the board's health check runs on it".into(),
        ));
    }
    let mut entries = Vec::new();
    for name in crate::build::BINARIES {
        let path = spec.bin_dir.join(name);
        let bytes = read(&path).map_err(|_| {
            DeployError::Invalid(format!(
                "{} is missing; build it with `edge-deploy build --board {}`",
                path.display(),
                spec.board.name
            ))
        })?;
        check_binary(&path, &bytes, &spec.target.triple)?;
        if name == "edge-run" && spec.source.is_some() && !links_gstreamer(&bytes) {
            return Err(DeployError::Invalid(format!(
                "{} was built without GStreamer, so it cannot read --source; build it with `edge-deploy build --board {} --gstreamer`",
                path.display(),
                spec.board.name
            )));
        }
        entries.push(Entry {
            path: format!("bin/{name}"),
            bytes,
            mode: 0o755,
        });
    }
    let mut model =
        Manifest::load(&spec.manifest).map_err(|e| DeployError::Invalid(e.to_string()))?;
    let onnx_path = model
        .existing_model_path()
        .map_err(|e| DeployError::Invalid(e.to_string()))?;
    let onnx = read(&onnx_path)?;
    // The bundled manifest names the bundled model, whatever the original's source.
    model.source.path = Some("model.onnx".into());
    model.source.file = "model.onnx".into();
    model.source.sha256 = sha256_hex(&onnx);
    model.source.pip = None;
    model.source.member = None;
    entries.extend(record_selftest(spec, &model, &onnx)?);
    entries.push(Entry {
        path: "model/model.toml".into(),
        bytes: toml::to_string(&model)
            .map_err(|e| DeployError::Invalid(e.to_string()))?
            .into_bytes(),
        mode: 0o644,
    });
    entries.push(Entry {
        path: "model/model.onnx".into(),
        bytes: onnx,
        mode: 0o644,
    });
    if let Some(actions) = &spec.actions {
        entries.push(Entry {
            path: "actions.toml".into(),
            bytes: read(actions)?,
            mode: 0o644,
        });
    }
    let service = Service {
        dir: spec.board.deploy.service_dir.clone(),
        user: spec.board.deploy.user.clone(),
        model: model.name.clone(),
        run_args: spec.run_args.clone(),
        actions: spec.actions.is_some(),
        source: spec.source.clone(),
    };
    entries.push(Entry {
        path: "run.sh".into(),
        bytes: service.run_script().into_bytes(),
        mode: 0o755,
    });
    entries.push(Entry {
        path: SERVICE.into(),
        bytes: service.unit().into_bytes(),
        mode: 0o644,
    });
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    let content_hash = sha256_hex(checksums(&entries).as_bytes());
    let id = format!("{}-{}", env!("CARGO_PKG_VERSION"), &content_hash[..12]);
    // Room for release.toml and SHA256SUMS, written after this count.
    let unpacked_bytes = entries.iter().map(|e| e.bytes.len() as u64).sum::<u64>() + 65536;
    let release = Release {
        id: id.clone(),
        board: spec.board.name.clone(),
        target: spec.target.triple.clone(),
        model: model.name.clone(),
        service_dir: service.dir.clone(),
        user: service.user.clone(),
        run_args: spec.run_args.clone(),
        source: spec.source.clone(),
        unpacked_bytes,
    };
    entries.push(Entry {
        path: RELEASE_FILE.into(),
        bytes: toml::to_string(&release)
            .map_err(|e| DeployError::Invalid(e.to_string()))?
            .into_bytes(),
        mode: 0o644,
    });
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    let sums = checksums(&entries);
    entries.push(Entry {
        path: "SHA256SUMS".into(),
        bytes: sums.into_bytes(),
        mode: 0o644,
    });
    let archive = pack(&id, &entries)?;
    std::fs::create_dir_all(&spec.out_dir).map_err(|e| DeployError::io(&spec.out_dir, e))?;
    let path = spec.out_dir.join(format!(
        "edgewise-{}-{}-{id}.tar.gz",
        file_name_safe(&spec.board.name),
        file_name_safe(&model.name)
    ));
    write_atomically(&path, &archive)?;
    Ok(Bundle {
        sha256: sha256_hex(&archive),
        bytes: archive.len() as u64,
        path,
        release,
    })
}

/// A reproducible `.tar.gz` of `entries` under the folder `top`.
fn pack(top: &str, entries: &[Entry]) -> Result<Vec<u8>, DeployError> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mut dirs: Vec<String> = vec![top.to_string()];
    for entry in entries {
        if let Some((dir, _)) = entry.path.rsplit_once('/') {
            let dir = format!("{top}/{dir}");
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
    }
    let io = |e: std::io::Error| DeployError::Invalid(format!("packing the bundle: {e}"));
    for dir in &dirs {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_size(0);
        header.set_mtime(0);
        tar.append_data(&mut header, format!("{dir}/"), std::io::empty())
            .map_err(io)?;
    }
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mode(entry.mode);
        header.set_size(entry.bytes.len() as u64);
        header.set_mtime(0);
        tar.append_data(
            &mut header,
            format!("{top}/{}", entry.path),
            &entry.bytes[..],
        )
        .map_err(io)?;
    }
    tar.into_inner().and_then(|gz| gz.finish()).map_err(io)
}

/// Reads a bundle's `release.toml` and checksum, checking that it is a
/// bundle: one top folder named by its id.
pub fn open(path: &Path) -> Result<Bundle, DeployError> {
    let bad = |message: String| DeployError::Bundle {
        path: path.to_path_buf(),
        message,
    };
    let bytes = read(path)?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
    let entries = archive
        .entries()
        .map_err(|e| bad(format!("not a .tar.gz archive: {e}")))?;
    let mut release = None;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("unreadable archive: {e}")))?;
        let name = entry
            .path()
            .map_err(|e| bad(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        if name.split('/').nth(1) == Some(RELEASE_FILE) {
            let mut text = String::new();
            entry
                .read_to_string(&mut text)
                .map_err(|e| bad(format!("{name}: {e}")))?;
            let parsed: Release = toml::from_str(&text).map_err(|e| bad(format!("{name}: {e}")))?;
            if !name.starts_with(&format!("{}/", parsed.id)) {
                return Err(bad(format!(
                    "{name} is not in the folder of release {}",
                    parsed.id
                )));
            }
            release = Some(parsed);
        }
    }
    let release =
        release.ok_or_else(|| bad(format!("no {RELEASE_FILE}: not an Edgewise bundle")))?;
    if !release
        .id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b))
    {
        return Err(bad(format!(
            "release id `{}` is not a plain name",
            release.id
        )));
    }
    Ok(Bundle {
        path: path.to_path_buf(),
        sha256: sha256_hex(&bytes),
        bytes: bytes.len() as u64,
        release,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_service_needs_an_edge_run_built_with_gstreamer() {
        let board = Board::builtin("rpi4").unwrap();
        let bins = tempfile::tempdir().unwrap();
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[18..20].copy_from_slice(&183u16.to_le_bytes());
        for name in crate::build::BINARIES {
            std::fs::write(bins.path().join(name), &elf).unwrap();
        }
        let spec = Spec {
            target: BuildTarget::for_board(&board, None).unwrap(),
            board,
            bin_dir: bins.path().to_path_buf(),
            manifest: bins.path().join("absent.toml"),
            actions: None,
            selftest_images: vec![bins.path().join("page.png")],
            run_args: vec![],
            source: Some("/dev/video0".into()),
            host_edge_run: bins.path().join("edge-run"),
            out_dir: bins.path().to_path_buf(),
        };
        let refused = create(&spec).unwrap_err().to_string();
        assert!(
            refused.contains("built without GStreamer")
                && refused.contains("edge-deploy build --board rpi4 --gstreamer"),
            "{refused}"
        );
        // Linked against GStreamer, it goes on (to the missing manifest).
        elf.extend_from_slice(b"libgstreamer-1.0.so.0\0");
        std::fs::write(bins.path().join("edge-run"), &elf).unwrap();
        let next = create(&spec).unwrap_err().to_string();
        assert!(
            !next.contains("GStreamer") && next.contains("absent.toml"),
            "{next}"
        );
    }

    #[test]
    fn binaries_for_another_architecture_are_refused() {
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[18..20].copy_from_slice(&62u16.to_le_bytes());
        let path = Path::new("edge-run");
        assert!(check_binary(path, &elf, "x86_64-unknown-linux-gnu").is_ok());
        let err = check_binary(path, &elf, "aarch64-unknown-linux-gnu").unwrap_err();
        assert!(
            err.to_string()
                .contains("not a aarch64-unknown-linux-gnu executable"),
            "{err}"
        );
        assert!(check_binary(path, b"#!/bin/sh\n", "aarch64-unknown-linux-gnu").is_err());
    }

    #[test]
    fn archives_are_reproducible_and_open_back() {
        let entries = [
            Entry {
                path: RELEASE_FILE.into(),
                bytes: toml::to_string(&Release {
                    id: "0.1.0-abc".into(),
                    board: "rpi4".into(),
                    target: "aarch64-unknown-linux-gnu".into(),
                    model: "m".into(),
                    service_dir: "/opt/edgewise".into(),
                    user: "pi".into(),
                    run_args: vec![],
                    source: Some("/dev/video0".into()),
                    unpacked_bytes: 9,
                })
                .unwrap()
                .into_bytes(),
                mode: 0o644,
            },
            Entry {
                path: "bin/x".into(),
                bytes: b"x".to_vec(),
                mode: 0o755,
            },
        ];
        let a = pack("0.1.0-abc", &entries).unwrap();
        assert_eq!(a, pack("0.1.0-abc", &entries).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.tar.gz");
        std::fs::write(&path, &a).unwrap();
        let bundle = open(&path).unwrap();
        assert_eq!(bundle.release.id, "0.1.0-abc");
        assert_eq!(bundle.sha256, sha256_hex(&a));
        // The same release under another folder is not a bundle.
        std::fs::write(&path, pack("elsewhere", &entries).unwrap()).unwrap();
        assert!(
            open(&path)
                .unwrap_err()
                .to_string()
                .contains("not in the folder")
        );
        std::fs::write(&path, b"not gzip").unwrap();
        assert!(open(&path).is_err());
    }
}
