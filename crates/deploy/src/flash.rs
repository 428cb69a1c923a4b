//! Putting a release into an SD-card image, so the board runs the detector
//! on its first boot, without mounting anything: the partition table is read
//! with `sfdisk --json`, the ext4 root written with e2fsprogs' `debugfs` and
//! the FAT boot partition with mtools, each at its offset inside the image.
//! The work happens on a copy beside the output, renamed over it only once
//! every file has been read back and checked.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::DeployError;
use crate::bundle::Bundle;
use crate::unit::SERVICE;

/// What to write into the image.
#[derive(Clone, Debug)]
pub struct Spec {
    /// The operating system image (Raspberry Pi OS Lite, ...).
    pub image: PathBuf,
    /// Where the flashed image goes (the input image itself when equal).
    pub out: PathBuf,
    /// The release.
    pub bundle: Bundle,
    /// The board's host name.
    pub hostname: Option<String>,
    /// A public key allowed to log in as the service's user.
    pub authorized_key: Option<PathBuf>,
}

/// One partition of the image.
#[derive(Clone, Debug, PartialEq)]
pub struct Partition {
    /// Byte offset in the image.
    pub offset: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// The table's type code (`83`, `c`, or a GPT type GUID).
    pub kind: String,
}

/// The partitions of `image`, from `sfdisk --json` (MBR and GPT alike).
pub fn partitions(image: &Path) -> Result<Vec<Partition>, DeployError> {
    let output = Command::new("sfdisk")
        .arg("--json")
        .arg(image)
        .output()
        .map_err(|e| DeployError::Tool {
            tool: "sfdisk".into(),
            message: format!("{e}; install it with `sudo apt-get install fdisk`"),
        })?;
    if !output.status.success() {
        return Err(DeployError::Invalid(format!(
            "{} has no partition table sfdisk can read: {}",
            image.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let json: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| DeployError::Invalid(format!("sfdisk --json: {e}")))?;
    let table = &json["partitiontable"];
    let sector = table["sectorsize"].as_u64().unwrap_or(512);
    Ok(table["partitions"]
        .as_array()
        .map(|parts| {
            parts
                .iter()
                .map(|p| Partition {
                    offset: p["start"].as_u64().unwrap_or(0) * sector,
                    bytes: p["size"].as_u64().unwrap_or(0) * sector,
                    kind: p["type"].as_str().unwrap_or("").to_ascii_lowercase(),
                })
                .collect()
        })
        .unwrap_or_default())
}

const LINUX_GPT: &str = "0fc63daf-8483-4772-8e79-3d69d8477de4";
const FAT_KINDS: [&str; 6] = [
    "b",
    "c",
    "e",
    "ef",
    "c12a7328-f81f-11d2-ba4b-00a0c93ec93b",
    "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7",
];

/// The root file system (the largest Linux partition holding ext4) and the
/// boot partition (the first FAT one), when there is one.
pub fn find_root_and_boot(
    image: &Path,
    parts: &[Partition],
) -> Result<(Partition, Option<Partition>), DeployError> {
    let mut file = std::fs::File::open(image).map_err(|e| DeployError::io(image, e))?;
    let mut roots: Vec<&Partition> = Vec::new();
    for p in parts
        .iter()
        .filter(|p| p.kind == "83" || p.kind == LINUX_GPT)
    {
        // The ext2/3/4 superblock magic, 0xEF53, 56 bytes into the superblock at 1024.
        let mut magic = [0u8; 2];
        use std::io::Seek;
        file.seek(std::io::SeekFrom::Start(p.offset + 1024 + 56))
            .and_then(|_| file.read_exact(&mut magic))
            .map_err(|e| DeployError::io(image, e))?;
        if magic == [0x53, 0xef] {
            roots.push(p);
        }
    }
    let root = roots
        .into_iter()
        .max_by_key(|p| p.bytes)
        .cloned()
        .ok_or_else(|| {
            DeployError::Invalid(format!(
                "{} has no ext4 Linux partition to install into (partitions: {})",
                image.display(),
                parts
                    .iter()
                    .map(|p| format!("type {} at {}", p.kind, p.offset))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
    let boot = parts
        .iter()
        .find(|p| FAT_KINDS.contains(&p.kind.as_str()))
        .cloned();
    Ok((root, boot))
}

/// `debugfs` on the ext4 file system at `offset` in `image`: runs the
/// commands in `script` (written with `-w`), or one request (`-R`).
fn debugfs(
    image: &Path,
    offset: u64,
    script: Option<&Path>,
    request: Option<&str>,
) -> Result<String, DeployError> {
    let mut command = Command::new("debugfs");
    if let Some(script) = script {
        command.arg("-w").arg("-f").arg(script);
    }
    if let Some(request) = request {
        command.arg("-R").arg(request);
    }
    command.arg(format!("{}?offset={offset}", image.display()));
    let output = command.output().map_err(|e| DeployError::Tool {
        tool: "debugfs".into(),
        message: format!("{e}; install it with `sudo apt-get install e2fsprogs`"),
    })?;
    if !output.status.success() {
        return Err(DeployError::Tool {
            tool: "debugfs".into(),
            message: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A file read out of the image, `None` when it is not there.
fn read_file(
    image: &Path,
    offset: u64,
    path: &str,
    scratch: &Path,
) -> Result<Option<Vec<u8>>, DeployError> {
    let target = scratch.join("dumped");
    let _ = std::fs::remove_file(&target);
    debugfs(
        image,
        offset,
        None,
        Some(&format!("dump {path} {}", target.display())),
    )?;
    match std::fs::read(&target) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(_) => Ok(None),
    }
}

/// Paths on the image's file system: plain ones only, as debugfs reads its
/// commands split on blanks.
fn plain(path: &str) -> Result<&str, DeployError> {
    if path.is_empty()
        || !path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+@".contains(&b))
    {
        return Err(DeployError::Invalid(format!(
            "`{path}` cannot be written into an image: use letters, digits and / . _ - + @ only"
        )));
    }
    Ok(path)
}

/// The user's uid, gid and home from the image's /etc/passwd.
fn user_entry(passwd: &str, user: &str) -> Option<(u32, u32, String)> {
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() >= 6 && fields[0] == user).then(|| {
            Some((
                fields[2].parse().ok()?,
                fields[3].parse().ok()?,
                fields[5].to_string(),
            ))
        })?
    })
}

/// The debugfs commands and the files they install, built up in order.
struct Script {
    lines: Vec<String>,
    /// Files written: image path, expected contents.
    files: Vec<(String, Vec<u8>)>,
    scratch: PathBuf,
    counter: usize,
}

impl Script {
    fn mkdir_all(&mut self, path: &str, owner: Option<(u32, u32)>) {
        let mut at = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            at.push('/');
            at.push_str(part);
            self.lines.push(format!("mkdir {at}"));
        }
        self.owner(path, 0o40755, owner);
    }

    fn owner(&mut self, path: &str, mode: u32, owner: Option<(u32, u32)>) {
        self.lines.push(format!("sif {path} mode 0{mode:o}"));
        let (uid, gid) = owner.unwrap_or((0, 0));
        self.lines.push(format!("sif {path} uid {uid}"));
        self.lines.push(format!("sif {path} gid {gid}"));
    }

    fn write(
        &mut self,
        path: &str,
        bytes: &[u8],
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> Result<(), DeployError> {
        self.counter += 1;
        let local = self.scratch.join(format!("file-{}", self.counter));
        std::fs::write(&local, bytes).map_err(|e| DeployError::io(&local, e))?;
        self.lines.push(format!("rm {path}"));
        self.lines.push(format!("write {} {path}", local.display()));
        self.owner(path, 0o100000 | mode, owner);
        self.files.push((path.to_string(), bytes.to_vec()));
        Ok(())
    }

    fn symlink(&mut self, path: &str, target: &str) {
        self.lines.push(format!("rm {path}"));
        self.lines.push(format!("symlink {path} {target}"));
    }
}

/// Files of the bundle: path inside the release, contents, mode.
fn unpack(bundle: &Bundle) -> Result<Vec<(String, Vec<u8>, u32)>, DeployError> {
    let bytes = std::fs::read(&bundle.path).map_err(|e| DeployError::io(&bundle.path, e))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
    let bad = |e: std::io::Error| DeployError::Bundle {
        path: bundle.path.clone(),
        message: e.to_string(),
    };
    let mut files = Vec::new();
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path().map_err(bad)?.to_string_lossy().into_owned();
        let inner = name
            .strip_prefix(&format!("{}/", bundle.release.id))
            .ok_or_else(|| DeployError::Bundle {
                path: bundle.path.clone(),
                message: format!("{name} is outside the release folder"),
            })?
            .to_string();
        let mode = entry.header().mode().map_err(bad)? & 0o777;
        let mut data = Vec::new();
        entry.read_to_end(&mut data).map_err(bad)?;
        files.push((inner, data, mode));
    }
    // The device checks these on every push; check them here too.
    let sums = files
        .iter()
        .find(|(n, _, _)| n == "SHA256SUMS")
        .map(|(_, d, _)| String::from_utf8_lossy(d).into_owned())
        .unwrap_or_default();
    for (name, data, _) in files.iter().filter(|(n, _, _)| n != "SHA256SUMS") {
        let line = format!("{:x}  {name}", Sha256::digest(data));
        if !sums.lines().any(|l| l == line) {
            return Err(DeployError::Bundle {
                path: bundle.path.clone(),
                message: format!("{name} does not match SHA256SUMS: the bundle is corrupt"),
            });
        }
    }
    Ok(files)
}

/// What was written.
#[derive(Clone, Debug)]
pub struct Flashed {
    /// The image written.
    pub out: PathBuf,
    /// Files installed in the root file system.
    pub files: usize,
    /// Whether SSH was enabled on the boot partition.
    pub ssh_enabled: bool,
}

/// Writes the release into a copy of the image and renames the copy to
/// `spec.out` once everything reads back right (see the module's documentation).
pub fn flash(spec: &Spec) -> Result<Flashed, DeployError> {
    let release = &spec.bundle.release;
    let dir = plain(&release.service_dir)?
        .trim_end_matches('/')
        .to_string();
    let parts = partitions(&spec.image)?;
    let (root, boot) = find_root_and_boot(&spec.image, &parts)?;
    let files = unpack(&spec.bundle)?;
    let out_dir = spec
        .out
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let scratch = tempfile::tempdir_in(out_dir).map_err(|e| DeployError::io(out_dir, e))?;
    // The copy lives in the scratch folder, beside the output: same file
    // system, so the final rename is atomic; dropped on any error.
    let copy = scratch.path().join("image");
    std::fs::copy(&spec.image, &copy).map_err(|e| DeployError::io(&spec.image, e))?;
    let files_dir = scratch.path().join("files");
    std::fs::create_dir(&files_dir).map_err(|e| DeployError::io(&files_dir, e))?;

    let passwd = read_file(&copy, root.offset, "/etc/passwd", scratch.path())?
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let user = user_entry(&passwd, &release.user);
    let mut script = Script {
        lines: vec![],
        files: vec![],
        scratch: files_dir,
        counter: 0,
    };
    let owner = user.as_ref().map(|(uid, gid, _)| (*uid, *gid));
    let release_dir = format!("{dir}/releases/{}", release.id);
    script.mkdir_all(&dir, owner);
    script.mkdir_all(&format!("{dir}/releases"), owner);
    script.mkdir_all(&format!("{dir}/inbox"), owner);
    script.mkdir_all(&release_dir, owner);
    let mut made: Vec<String> = vec![];
    for (name, data, mode) in &files {
        if let Some((parent, _)) = name.rsplit_once('/') {
            let parent = format!("{release_dir}/{parent}");
            if !made.contains(&parent) {
                script.mkdir_all(&parent, owner);
                made.push(parent);
            }
        }
        script.write(
            &format!("{release_dir}/{}", plain(name)?),
            data,
            *mode,
            owner,
        )?;
    }
    script.symlink(
        &format!("{dir}/current"),
        &format!("releases/{}", release.id),
    );
    let unit = files
        .iter()
        .find(|(n, _, _)| n == SERVICE)
        .map(|(_, d, _)| d.clone())
        .ok_or_else(|| DeployError::Bundle {
            path: spec.bundle.path.clone(),
            message: format!("no {SERVICE}"),
        })?;
    script.mkdir_all("/etc/systemd/system/multi-user.target.wants", None);
    script.write(
        &format!("/etc/systemd/system/{SERVICE}"),
        &unit,
        0o644,
        None,
    )?;
    script.symlink(
        &format!("/etc/systemd/system/multi-user.target.wants/{SERVICE}"),
        &format!("/etc/systemd/system/{SERVICE}"),
    );
    if let Some(name) = &spec.hostname {
        let valid = !name.is_empty()
            && name.len() <= 63
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !name.starts_with('-');
        if !valid {
            return Err(DeployError::Invalid(format!(
                "`{name}` is not a host name: letters, digits and inner hyphens, at most 63"
            )));
        }
        let old = read_file(&copy, root.offset, "/etc/hostname", scratch.path())?
            .map(|b| String::from_utf8_lossy(&b).trim().to_string());
        script.write("/etc/hostname", format!("{name}\n").as_bytes(), 0o644, None)?;
        if let (Some(old), Some(hosts)) = (
            old,
            read_file(&copy, root.offset, "/etc/hosts", scratch.path())?,
        ) {
            let hosts = String::from_utf8_lossy(&hosts)
                .lines()
                .map(|line| {
                    let mut words: Vec<&str> = line.split_whitespace().collect();
                    if words.first() == Some(&"127.0.1.1") {
                        words
                            .iter_mut()
                            .filter(|w| **w == old)
                            .for_each(|w| *w = name);
                        words.join("\t")
                    } else {
                        line.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n")
                + "\n";
            script.write("/etc/hosts", hosts.as_bytes(), 0o644, None)?;
        }
    }
    if let Some(key_path) = &spec.authorized_key {
        let key = std::fs::read(key_path).map_err(|e| DeployError::io(key_path, e))?;
        let (uid, gid, home) = user.clone().ok_or_else(|| {
            DeployError::Invalid(format!(
                "user `{}` does not exist in the image's /etc/passwd: create it first (Raspberry Pi Imager's settings, or userconf.txt), or use a board profile with an existing user",
                release.user
            ))
        })?;
        let home = plain(&home)?.to_string();
        script.mkdir_all(&format!("{home}/.ssh"), Some((uid, gid)));
        script.owner(&format!("{home}/.ssh"), 0o40700, Some((uid, gid)));
        script.write(
            &format!("{home}/.ssh/authorized_keys"),
            &key,
            0o600,
            Some((uid, gid)),
        )?;
    }
    let commands = scratch.path().join("debugfs.txt");
    std::fs::write(&commands, script.lines.join("\n") + "\n")
        .map_err(|e| DeployError::io(&commands, e))?;
    debugfs(&copy, root.offset, Some(&commands), None)?;
    // debugfs goes on after a failed command and exits 0: read every file back.
    for (path, expected) in &script.files {
        let found = read_file(&copy, root.offset, path, scratch.path())?;
        if found.as_deref() != Some(&expected[..]) {
            let free = debugfs(&copy, root.offset, None, Some("stats"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("Free blocks:"))
                        .map(str::to_string)
                })
                .unwrap_or_default();
            return Err(DeployError::Invalid(format!(
                "{path} did not land in the image's root file system ({} MiB; {free}): is it full? {} is unchanged",
                root.bytes >> 20,
                spec.image.display()
            )));
        }
    }
    let ssh_enabled = match &boot {
        Some(boot) => {
            // Raspberry Pi OS starts its SSH server on the first boot when
            // the boot partition holds a file named `ssh`.
            let empty = scratch.path().join("ssh");
            std::fs::write(&empty, b"").map_err(|e| DeployError::io(&empty, e))?;
            let output = Command::new("mcopy")
                .arg("-o")
                .arg("-i")
                .arg(format!("{}@@{}", copy.display(), boot.offset))
                .arg(&empty)
                .arg("::ssh")
                .output()
                .map_err(|e| DeployError::Tool {
                    tool: "mcopy".into(),
                    message: format!("{e}; install it with `sudo apt-get install mtools`"),
                })?;
            if !output.status.success() {
                return Err(DeployError::Tool {
                    tool: "mcopy".into(),
                    message: String::from_utf8_lossy(&output.stderr).trim().to_string(),
                });
            }
            true
        }
        None => false,
    };
    std::fs::rename(&copy, &spec.out).map_err(|e| DeployError::io(&spec.out, e))?;
    Ok(Flashed {
        out: spec.out.clone(),
        files: script.files.len(),
        ssh_enabled,
    })
}

/// The disk a partition device belongs to: `/dev/sdb1` → `/dev/sdb`,
/// `/dev/mmcblk0p2` → `/dev/mmcblk0`, `/dev/nvme0n1p1` → `/dev/nvme0n1`.
fn disk_of(device: &str) -> &str {
    let digit = |c: char| c.is_ascii_digit();
    let trimmed = device.trim_end_matches(digit);
    if trimmed.len() == device.len() {
        return device;
    }
    // Disks whose names end in a digit number their partitions after a `p`.
    if let Some(disk) = trimmed.strip_suffix('p')
        && disk.ends_with(digit)
    {
        return disk;
    }
    let name = trimmed.rsplit('/').next().unwrap_or(trimmed);
    if ["sd", "vd", "hd", "xvd"]
        .iter()
        .any(|p| name.starts_with(p))
    {
        trimmed
    } else {
        device
    }
}

/// Why writing to `device` is refused, given the system's mounts
/// (`/proc/mounts`): it or one of its partitions is mounted, or it holds
/// the running system.
pub fn refuse_device(device: &str, mounts: &str) -> Option<String> {
    let disk = disk_of(device);
    let mut mounted = Vec::new();
    let mut system = false;
    for line in mounts.lines() {
        let mut words = line.split_whitespace();
        let (Some(source), Some(point)) = (words.next(), words.next()) else {
            continue;
        };
        if source.starts_with("/dev/") && disk_of(source) == disk {
            mounted.push(format!("{source} on {point}"));
            system |= point == "/";
        }
    }
    if system {
        Some(format!(
            "{device} holds the running system ({}); pick the SD card's device (see `lsblk`)",
            mounted.join(", ")
        ))
    } else if !mounted.is_empty() {
        Some(format!(
            "{device} is mounted ({}): unmount it first (`sudo umount {disk}*`)",
            mounted.join(", ")
        ))
    } else {
        None
    }
}

/// Writes `image` to the block device `device` (a card), after
/// [`refuse_device`] unless `force`; returns the bytes written.
pub fn write_to_device(image: &Path, device: &Path, force: bool) -> Result<u64, DeployError> {
    use std::io::Write;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let meta = std::fs::metadata(device).map_err(|e| DeployError::io(device, e))?;
    if !meta.file_type().is_block_device() {
        return Err(DeployError::Invalid(format!(
            "{} is not a block device: --device takes a card's device (see `lsblk`); write an image file with -o",
            device.display()
        )));
    }
    let real = device
        .canonicalize()
        .map_err(|e| DeployError::io(device, e))?;
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    if let Some(why) = refuse_device(&real.display().to_string(), &mounts)
        && !force
    {
        return Err(DeployError::Invalid(format!(
            "refusing to write: {why} (--force overrides)"
        )));
    }
    let mut source = std::fs::File::open(image).map_err(|e| DeployError::io(image, e))?;
    // O_EXCL on a block device: the kernel refuses it while mounted.
    let mut target = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc_o_excl())
        .open(device)
        .map_err(|e| DeployError::io(device, e))?;
    let mut buffer = vec![0u8; 4 << 20];
    let mut written = 0u64;
    loop {
        let n = source
            .read(&mut buffer)
            .map_err(|e| DeployError::io(image, e))?;
        if n == 0 {
            break;
        }
        target
            .write_all(&buffer[..n])
            .map_err(|e| DeployError::io(device, e))?;
        written += n as u64;
    }
    target.sync_all().map_err(|e| DeployError::io(device, e))?;
    Ok(written)
}

/// `O_EXCL` (the same value on every Linux architecture we build for).
const fn libc_o_excl() -> i32 {
    0o200
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_belong_to_their_disks() {
        assert_eq!(disk_of("/dev/sdb1"), "/dev/sdb");
        assert_eq!(disk_of("/dev/sdb"), "/dev/sdb");
        assert_eq!(disk_of("/dev/mmcblk0p2"), "/dev/mmcblk0");
        assert_eq!(disk_of("/dev/mmcblk0"), "/dev/mmcblk0");
        assert_eq!(disk_of("/dev/nvme0n1p1"), "/dev/nvme0n1");
        assert_eq!(disk_of("/dev/vda15"), "/dev/vda");
    }

    #[test]
    fn mounted_cards_and_the_system_disk_are_refused() {
        let mounts = "/dev/vda1 / ext4 rw 0 0\nproc /proc proc rw 0 0\n\
                      /dev/mmcblk0p1 /media/me/bootfs vfat rw 0 0\n";
        let system = refuse_device("/dev/vda", mounts).unwrap();
        assert!(system.contains("running system"), "{system}");
        let card = refuse_device("/dev/mmcblk0", mounts).unwrap();
        assert!(
            card.contains("is mounted") && card.contains("/media/me/bootfs"),
            "{card}"
        );
        assert_eq!(refuse_device("/dev/sdc", mounts), None);
    }

    #[test]
    fn users_are_found_in_passwd() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\npi:x:1000:1000:,,,:/home/pi:/bin/bash\n";
        assert_eq!(
            user_entry(passwd, "pi"),
            Some((1000, 1000, "/home/pi".into()))
        );
        assert_eq!(user_entry(passwd, "nobody"), None);
    }

    #[test]
    fn only_plain_paths_go_into_an_image() {
        assert!(plain("/opt/edgewise").is_ok());
        for bad in ["/opt/edge wise", "/opt/$(x)", "", "/opt/a\nb"] {
            assert!(plain(bad).is_err(), "{bad:?}");
        }
    }
}
