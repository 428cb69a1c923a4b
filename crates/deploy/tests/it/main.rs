//! `edge-deploy` against a real OpenSSH server on loopback ([`sshd`]): the
//! "device" is a folder of this machine whose sessions run the aarch64 build
//! through qemu-user. The model is PP-OCRv4 det at 320x320, its self-test on
//! page.png. `flash` is tested on an SD-card image, without a device.

mod sshd;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sshd::Device;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn edge_deploy(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edge-deploy"))
        .args(args)
        .output()
        .expect("running edge-deploy")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn run_ok(command: &mut Command) -> Output {
    let output = command.output().expect("spawning");
    assert!(output.status.success(), "{command:?}: {}", text(&output));
    output
}

/// What the tests do to the device with edge-deploy.
impl Device {
    fn push(&self, bundle: &Path, host: &str) -> Output {
        edge_deploy(&[
            "push",
            bundle.to_str().unwrap(),
            "--host",
            host,
            "--keep",
            "2",
            "--settle",
            "2",
            "--ssh-config",
            self.ssh_config.to_str().unwrap(),
        ])
    }

    fn status(&self) -> String {
        let out = edge_deploy(&[
            "status",
            "--board",
            self.board.to_str().unwrap(),
            "--host",
            "device",
            "--ssh-config",
            self.ssh_config.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A bundle of PP-OCRv4 det for this device, on `threads` threads (a
    /// different thread count makes a different release).
    fn bundle(&self, threads: usize, model_name: &str) -> PathBuf {
        let models = workspace().join("models");
        let mut manifest: toml::Table = std::fs::read_to_string(models.join("ppocr_v4_det.toml"))
            .unwrap()
            .parse()
            .unwrap();
        manifest.insert("name".into(), model_name.into());
        let source = manifest["source"].as_table_mut().unwrap();
        let onnx = models.join(".cache").join(source["file"].as_str().unwrap());
        assert!(
            onnx.is_file(),
            "{} is missing: run python3 models/fetch.py",
            onnx.display()
        );
        source.insert("path".into(), onnx.display().to_string().into());
        source.remove("pip");
        source.remove("member");
        let folder = self.root.path().join(format!("bundles {threads}; 'x'"));
        std::fs::create_dir_all(&folder).unwrap();
        let manifest_path = folder.join("model.toml");
        std::fs::write(&manifest_path, toml::to_string(&manifest).unwrap()).unwrap();
        let out = edge_deploy(&[
            "bundle",
            "--board",
            self.board.to_str().unwrap(),
            "--model",
            manifest_path.to_str().unwrap(),
            "--selftest-image",
            models.join(".cache/photos/page.png").to_str().unwrap(),
            "--input-size",
            "320x320",
            "--threads",
            &threads.to_string(),
            "-o",
            folder.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        PathBuf::from(stdout.split(": release").next().unwrap())
    }
}

/// The aarch64 build for the Pi 4 (a no-op when CI's arm-check made it).
fn build_for_the_pi(board: &Path) {
    let out = edge_deploy(&["build", "--board", board.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
}

/// Rewrites `bundle` into `out` with `edit` applied to its files, keeping
/// (`resign` false) or recomputing its SHA256SUMS; with `new_id`, as
/// another release.
fn tamper(
    bundle: &Path,
    out: &Path,
    new_id: Option<&str>,
    resign: bool,
    edit: impl Fn(&str, &mut Vec<u8>),
) {
    use sha2::Digest;
    let old_id = release_id(bundle);
    let bytes = std::fs::read(bundle).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
    let mut files: Vec<(tar::Header, String, Vec<u8>)> = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        if let Some(id) = new_id {
            name = name.replacen(&old_id, id, 1);
            if name.ends_with("/release.toml") {
                data = String::from_utf8(data)
                    .unwrap()
                    .replace(&old_id, id)
                    .into_bytes();
            }
        }
        edit(&name, &mut data);
        files.push((entry.header().clone(), name, data));
    }
    if resign {
        let sums: String = files
            .iter()
            .filter(|(h, name, _)| h.entry_type().is_file() && !name.ends_with("/SHA256SUMS"))
            .map(|(_, name, data)| {
                let inner = name.split_once('/').unwrap().1;
                format!("{:x}  {inner}\n", sha2::Sha256::digest(data))
            })
            .collect();
        let (_, _, data) = files
            .iter_mut()
            .find(|(_, n, _)| n.ends_with("/SHA256SUMS"))
            .unwrap();
        *data = sums.into_bytes();
    }
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (mut header, name, data) in files {
        header.set_size(data.len() as u64);
        tar.append_data(&mut header, name, &data[..]).unwrap();
    }
    std::fs::write(out, tar.into_inner().unwrap().finish().unwrap()).unwrap();
}

fn release_id(bundle: &Path) -> String {
    edgewise_deploy::bundle::open(bundle).unwrap().release.id
}

#[test]
fn first_and_second_push_then_a_failed_health_check_rolls_back() {
    let device = Device::start(None);
    build_for_the_pi(&device.board);
    // A model name that would break a careless shell or unit file.
    let first = device.bundle(1, "det; $(touch /tmp/edgewise-pwned) 'x' 100%");
    let second = device.bundle(2, "det");
    let (a, b) = (release_id(&first), release_id(&second));
    assert_ne!(a, b);

    let out = device.push(&first, "device");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(device.status(), format!("device: current {a} active"));
    let out = device.push(&second, "device");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(device.status(), format!("device: current {b} active"));
    assert_eq!(device.releases(), sorted([&a, &b]));

    // A release whose detections differ from what the build machine
    // recorded (checksums made to match): it installs, fails its health
    // check, and the device goes back to the second release.
    let bad = device.root.path().join("bad.tar.gz");
    tamper(&second, &bad, Some("0.0.0-tampered"), true, |name, data| {
        if name.ends_with("selftest/expected.jsonl") {
            let text = String::from_utf8(data.clone()).unwrap();
            *data = text
                .replacen("\"score\":0.", "\"score\":0.0", 1)
                .into_bytes();
        }
    });
    let out = device.push(&bad, "device");
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("RolledBack"), "{said}");
    assert!(said.contains("self-test failed"), "{said}");
    assert!(said.contains(&format!("rolled back to {b}")), "{said}");
    assert_eq!(device.status(), format!("device: current {b} active"));
    assert_eq!(device.releases(), sorted([&a, &b]));

    // The same release again: nothing to upload, it simply runs.
    let out = device.push(&second, "device");
    assert!(text(&out).contains("already uploaded"), "{}", text(&out));
    assert!(!Path::new("/tmp/edgewise-pwned").exists());
}

fn sorted<const N: usize>(ids: [&String; N]) -> Vec<String> {
    let mut v: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

#[test]
fn a_cut_upload_and_a_corrupt_bundle_leave_the_running_release() {
    let device = Device::start(None);
    build_for_the_pi(&device.board);
    let first = device.bundle(1, "det");
    let second = device.bundle(2, "det");
    let (a, b) = (release_id(&first), release_id(&second));
    let out = device.push(&first, "device");
    assert!(out.status.success(), "{}", text(&out));

    // The network drops the upload after 1 MiB.
    let out = device.push(&second, "device-cut");
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("upload failed"), "{said}");
    assert!(said.contains("still runs"), "{said}");
    assert_eq!(device.status(), format!("device: current {a} active"));
    let leftovers = std::fs::read_dir(device.view.join("releases"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".incoming")
        })
        .count();
    assert_eq!(leftovers, 1, "the half upload stays until the next push");

    // A bundle whose model changed after it was made: refused by its checksums.
    let corrupt = device.root.path().join("corrupt.tar.gz");
    tamper(&second, &corrupt, None, false, |name, data| {
        if name.ends_with("model/model.onnx") {
            let middle = data.len() / 2;
            data[middle] ^= 0xff;
        }
    });
    let out = device.push(&corrupt, "device");
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("Corrupt"), "{said}");
    assert!(said.contains("model/model.onnx: FAILED"), "{said}");
    assert_eq!(device.status(), format!("device: current {a} active"));
    assert_eq!(device.releases(), std::slice::from_ref(&a));

    // The next push goes through and clears the half upload: here as a
    // fleet, with a second device that is down.
    let fleet = device.root.path().join("fleet.txt");
    std::fs::write(
        &fleet,
        "# two cameras\ndevice\nunreachable  # switched off\n",
    )
    .unwrap();
    let out = edge_deploy(&[
        "push",
        second.to_str().unwrap(),
        "--hosts",
        fleet.to_str().unwrap(),
        "--ssh-config",
        device.ssh_config.to_str().unwrap(),
    ]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        said.contains(&format!("device: ok, running {b}")),
        "{}",
        text(&out)
    );
    assert!(said.contains("unreachable: FAILED"), "{}", text(&out));
    assert_eq!(device.status(), format!("device: current {b} active"));
    assert_eq!(device.releases(), sorted([&a, &b]));

    // edge-bench on the device, its report brought home.
    let report = device.root.path().join("pi4.json");
    let out = edge_deploy(&[
        "bench",
        "--board",
        device.board.to_str().unwrap(),
        "--host",
        "device",
        "-o",
        report.to_str().unwrap(),
        "--ssh-config",
        device.ssh_config.to_str().unwrap(),
        "--",
        "--input-shape",
        "1x3x320x320",
        "--threads",
        "1",
        "--warmup",
        "1",
        "--runs",
        "1",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let report = std::fs::read_to_string(&report).unwrap();
    // edge-bench's own reader takes it, so `edge-bench merge` does.
    let parsed = edgewise_measure::report::Report::from_json(&report, "pi4.json").unwrap();
    assert_eq!(
        edgewise_measure::report::Report::merge(vec![parsed.clone(), parsed])
            .variants
            .len(),
        2
    );
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    let variant = &report["variants"][0];
    assert_eq!(variant["machine"]["arch"], "aarch64");
    let stages: Vec<&str> = variant["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert!(
        stages.contains(&"backbone") && stages.contains(&"head"),
        "{stages:?}"
    );
}

#[test]
fn a_full_disk_is_reported_and_the_old_release_survives() {
    let first_mib = 200;
    let device = Device::start(Some(first_mib));
    build_for_the_pi(&device.board);
    let first = device.bundle(1, "det");
    let second = device.bundle(2, "det");
    let a = release_id(&first);
    let out = device.push(&first, "device");
    assert!(out.status.success(), "{}", text(&out));
    // Fill the device's disk but for 2 MiB.
    let dir = device.dir.display().to_string();
    let fill = device.ssh(
        "device",
        &[
            "sh",
            "-c",
            r#"dd if=/dev/zero of="$1/filler" bs=1M 2>/dev/null; truncate -s -2M "$1/filler""#,
            "fill",
            &dir,
        ],
    );
    assert!(fill.status.success(), "{}", text(&fill));
    let out = device.push(&second, "device");
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("NoSpace"), "{said}");
    assert!(said.contains("MiB free"), "{said}");
    assert_eq!(device.status(), format!("device: current {a} active"));
    assert_eq!(device.releases(), [a]);
}

#[test]
fn hosts_that_are_not_plain_destinations_run_nothing() {
    let device = Device::start(None);
    let marker = device.root.path().join("pwned");
    let m = marker.display();
    let bundle = device.root.path().join("none.tar.gz");
    for host in [
        format!("-oProxyCommand=touch {m}"),
        format!("device;touch {m}"),
        format!("device $(touch {m})"),
        format!("device;touch${{IFS}}{m}"),
    ] {
        // `--host=VALUE`, so that a leading `-` reaches edge-deploy's own check.
        let config = device.ssh_config.to_str().unwrap();
        let host_arg = format!("--host={host}");
        let bundle = bundle.to_str().unwrap();
        let out = edge_deploy(&["push", bundle, &host_arg, "--ssh-config", config]);
        if host.contains(' ') || host.starts_with('-') {
            assert!(
                text(&out).contains("is not an SSH destination"),
                "{host}: {}",
                text(&out)
            );
        }
        assert!(!out.status.success(), "{host}: {}", text(&out));
        let board = device.board.to_str().unwrap();
        let out = edge_deploy(&[
            "status",
            "--board",
            board,
            &host_arg,
            "--ssh-config",
            config,
        ]);
        assert!(!out.status.success(), "{host}: {}", text(&out));
    }
    assert!(!marker.exists());
}

/// A two-partition SD-card image like Raspberry Pi OS's: a FAT boot
/// partition and an ext4 root of `root_mib` MiB holding a `pi` user.
fn card_image(dir: &Path, root_mib: u64) -> PathBuf {
    let rootfs = dir.join("rootfs");
    for sub in ["etc/systemd/system", "home/pi", "opt"] {
        std::fs::create_dir_all(rootfs.join(sub)).unwrap();
    }
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/bash\npi:x:1000:1000:,,,:/home/pi:/bin/bash\n",
    )
    .unwrap();
    std::fs::write(rootfs.join("etc/hostname"), "raspberrypi\n").unwrap();
    std::fs::write(
        rootfs.join("etc/hosts"),
        "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost\n127.0.1.1\t\traspberrypi\n",
    )
    .unwrap();
    let boot = dir.join("boot.part");
    let root = dir.join("root.part");
    run_ok(Command::new("mkfs.vfat").arg("-C").arg(&boot).arg("32768"));
    run_ok(
        Command::new("truncate")
            .arg("-s")
            .arg(format!("{root_mib}M"))
            .arg(&root),
    );
    run_ok(
        Command::new("mkfs.ext4")
            .args(["-q", "-d"])
            .arg(&rootfs)
            .arg(&root),
    );
    let image = dir.join("raspios.img");
    let (boot_start, root_start) = (2048u64, 2048 + 65536u64);
    run_ok(
        Command::new("truncate")
            .arg("-s")
            .arg(format!("{}M", 1 + 32 + root_mib + 1))
            .arg(&image),
    );
    let mut sfdisk = Command::new("sfdisk")
        .arg("-q")
        .arg(&image)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    write!(
        sfdisk.stdin.take().unwrap(),
        "label: dos\nstart={boot_start}, size=65536, type=c\nstart={root_start}, size={}, type=83\n",
        root_mib * 2048
    )
    .unwrap();
    assert!(sfdisk.wait().unwrap().success());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(&image)
        .unwrap();
    for (part, start) in [(&boot, boot_start), (&root, root_start)] {
        use std::io::Seek;
        file.seek(std::io::SeekFrom::Start(start * 512)).unwrap();
        file.write_all(&std::fs::read(part).unwrap()).unwrap();
    }
    image
}

/// What debugfs says of `request` on the root partition of `image`.
fn debugfs(image: &Path, request: &str) -> String {
    let out = run_ok(Command::new("debugfs").arg("-R").arg(request).arg(format!(
        "{}?offset={}",
        image.display(),
        (2048 + 65536) * 512
    )));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sha256(path: &Path) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

#[test]
fn flash_installs_the_release_into_an_image_without_mounting_it() {
    let dir = tempfile::tempdir().unwrap();
    let board = workspace().join("boards/rpi4.toml");
    build_for_the_pi(&board);
    let models = workspace().join("models");
    let bundles = dir.path().join("bundles");
    let out = edge_deploy(&[
        "bundle",
        "--board",
        "rpi4",
        "--model",
        models.join("ppocr_v4_det.toml").to_str().unwrap(),
        "--selftest-image",
        models.join(".cache/photos/page.png").to_str().unwrap(),
        "--input-size",
        "320x320",
        "-o",
        bundles.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let bundle = PathBuf::from(stdout.split(": release").next().unwrap());
    let id = release_id(&bundle);
    let key = dir.path().join("key.pub");
    std::fs::write(
        &key,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGZha2Uta2V5LWZvci10ZXN0cw me@laptop\n",
    )
    .unwrap();

    let image = card_image(dir.path(), 160);
    let before = sha256(&image);
    let flashed = dir.path().join("flashed.img");
    let args = |image: &Path, out: Option<&Path>| {
        let mut args = vec![
            "flash".to_string(),
            "--image".into(),
            image.display().to_string(),
            "--bundle".into(),
            bundle.display().to_string(),
            "--hostname".into(),
            "cam-1".into(),
            "--authorized-key".into(),
            key.display().to_string(),
        ];
        if let Some(out) = out {
            args.extend(["-o".into(), out.display().to_string()]);
        }
        args
    };
    let run = |args: Vec<String>| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        edge_deploy(&refs)
    };
    let out = run(args(&image, Some(&flashed)));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        sha256(&image),
        before,
        "the original image is left as it was"
    );

    // The release, as the bundle has it, owned by pi, and `current` on it.
    let release = format!("/opt/edgewise/releases/{id}");
    let copy = dir.path().join("edge-run.back");
    debugfs(
        &flashed,
        &format!("dump {release}/bin/edge-run {}", copy.display()),
    );
    let built = workspace().join("target/boards/rpi4/aarch64-unknown-linux-gnu/deploy/edge-run");
    assert_eq!(sha256(&copy), sha256(&built));
    let listing = debugfs(&flashed, &format!("ls -l {release}/bin"));
    assert!(
        listing.contains("100755") && listing.contains(" 1000 "),
        "{listing}"
    );
    let current = debugfs(&flashed, "stat /opt/edgewise/current");
    assert!(
        current.contains(&format!("Fast link dest: \"releases/{id}\"")),
        "{current}"
    );
    // The unit, and its enablement: the link systemctl enable would make.
    let unit = debugfs(&flashed, "cat /etc/systemd/system/edgewise.service");
    assert!(
        unit.contains("ExecStart=\"/opt/edgewise/current/run.sh\" serve"),
        "{unit}"
    );
    let wants = debugfs(
        &flashed,
        "stat /etc/systemd/system/multi-user.target.wants/edgewise.service",
    );
    assert!(
        wants.contains("Fast link dest: \"/etc/systemd/system/edgewise.service\""),
        "{wants}"
    );
    // Host name, hosts file, the key (0600, pi's), SSH on at first boot.
    assert_eq!(debugfs(&flashed, "cat /etc/hostname"), "cam-1\n");
    assert!(debugfs(&flashed, "cat /etc/hosts").contains("127.0.1.1\tcam-1"));
    assert!(debugfs(&flashed, "cat /home/pi/.ssh/authorized_keys").contains("me@laptop"));
    let keys = debugfs(&flashed, "stat /home/pi/.ssh/authorized_keys");
    assert!(
        keys.contains("Mode:  0600") && keys.contains("User:  1000"),
        "{keys}"
    );
    let boot = run_ok(
        Command::new("mdir")
            .arg("-b")
            .arg("-i")
            .arg(format!("{}@@{}", flashed.display(), 2048 * 512))
            .arg("::"),
    );
    assert!(
        String::from_utf8_lossy(&boot.stdout).contains("::/SSH")
            || String::from_utf8_lossy(&boot.stdout)
                .to_lowercase()
                .contains("::/ssh")
    );

    // A root file system too small for the release: flashing in place fails
    // half-way, and the image is as it was.
    let small_dir = dir.path().join("small");
    std::fs::create_dir(&small_dir).unwrap();
    let small = card_image(&small_dir, 24);
    let before = sha256(&small);
    let out = run(args(&small, None));
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("is it full?"), "{said}");
    assert_eq!(sha256(&small), before);
    let left: Vec<_> = std::fs::read_dir(&small_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 4, "no scratch left behind: {left:?}");
}
