//! The device of the deploy tests: a real OpenSSH server (`/usr/sbin/sshd`,
//! Debian's `openssh-server`) on a loopback port, with a throw-away host key
//! and user key, and a client configuration that reaches it as `device`.
//!
//! The device is a folder of this machine, under a path that a careless
//! shell command would split, unquote or execute ([`HOSTILE`]). The server
//! sets `EDGEWISE_EXEC_PREFIX` so that its sessions run the aarch64 build
//! through qemu-user; there is no systemd, so the device script runs the
//! service from a pid file. With a disk size, the server runs in its own
//! mount namespace with the service folder on a tmpfs of that size (root
//! only), to fill the device's disk. `device-cut` reaches the same server
//! through a proxy that drops the connection after 1 MiB from the client,
//! an upload cut by the network; `unreachable` is a port nothing listens on.
//!
//! Dropping the [`Device`] stops the service and the server.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::{run_ok, workspace};

/// A path that a careless shell command would split, unquote or execute.
const HOSTILE: &str = "dev ice; it's $(touch /tmp/edgewise-pwned) \"q\"";

/// An sshd on loopback, the keys, a client configuration naming it
/// `device` (and `device-cut` through a proxy that drops the connection
/// after 1 MiB from the client), and a board profile installing into `dir`.
pub(crate) struct Device {
    /// The temporary folder holding all of it (keys, configurations, logs,
    /// the service folder); tests put their own files here too.
    pub(crate) root: tempfile::TempDir,
    sshd: Child,
    /// The device's service folder.
    pub(crate) dir: PathBuf,
    /// Where sessions see the service folder: through /proc when the server
    /// runs in its own mount namespace.
    pub(crate) view: PathBuf,
    /// The client configuration naming the hosts `device`, `device-cut` and
    /// `unreachable` (nothing listens there), for `ssh -F`.
    pub(crate) ssh_config: PathBuf,
    /// The board profile (`rpi4.toml`, deploying into `dir` as this user).
    pub(crate) board: PathBuf,
}

/// A loopback port that nothing listens on (the moment it is returned).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Device {
    /// A device whose service folder is on a filesystem of `disk_mib` MiB
    /// when given (a tmpfs in the server's own mount namespace: needs root).
    pub(crate) fn start(disk_mib: Option<u64>) -> Device {
        let root = tempfile::tempdir().unwrap();
        let base = root.path().to_path_buf();
        let dir = base.join(HOSTILE).join("edgewise");
        std::fs::create_dir_all(&dir).unwrap();
        for key in ["host_key", "user_key"] {
            run_ok(
                Command::new("ssh-keygen")
                    .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                    .arg(base.join(key)),
            );
        }
        std::fs::copy(base.join("user_key.pub"), base.join("authorized_keys")).unwrap();
        let host_key = std::fs::read_to_string(base.join("host_key.pub")).unwrap();
        std::fs::write(base.join("known_hosts"), format!("device {host_key}")).unwrap();
        let port = free_port();
        let user = String::from_utf8(run_ok(Command::new("id").arg("-un")).stdout)
            .unwrap()
            .trim()
            .to_string();
        let b = base.display();
        std::fs::write(
            base.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {b}/host_key\nPidFile {b}/sshd.pid\n\
                 AuthorizedKeysFile {b}/authorized_keys\nStrictModes no\nUsePAM no\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\n\
                 SetEnv \"EDGEWISE_EXEC_PREFIX=qemu-aarch64 -cpu cortex-a72 -L /usr/aarch64-linux-gnu\"\n"
            ),
        )
        .unwrap();
        let proxy_port = cutting_proxy(port, 1 << 20);
        let client = |name: &str, port: u16| {
            format!(
                "Host {name}\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n  \
                 IdentityFile {b}/user_key\n  IdentitiesOnly yes\n  HostKeyAlias device\n  \
                 UserKnownHostsFile {b}/known_hosts\n  StrictHostKeyChecking yes\n"
            )
        };
        let ssh_config = base.join("ssh_config");
        std::fs::write(
            &ssh_config,
            client("device", port)
                + &client("device-cut", proxy_port)
                + &client("unreachable", free_port()),
        )
        .unwrap();
        // The privilege separation folder sshd wants when it runs as root.
        if user == "root" {
            std::fs::create_dir_all("/run/sshd").unwrap();
        }
        let sshd_args = ["-D", "-e", "-f"];
        let mut sshd = match disk_mib {
            None => Command::new("/usr/sbin/sshd"),
            Some(mib) => {
                assert_eq!(
                    user, "root",
                    "a small disk for the device needs root (mount)"
                );
                let mut c = Command::new("unshare");
                c.args(["--mount", "--propagation", "private", "sh", "-c"])
                    .arg(r#"mount -t tmpfs -o size="$1"m tmpfs "$2" && shift 2 && exec /usr/sbin/sshd "$@""#)
                    .arg("sh")
                    .arg(mib.to_string())
                    .arg(&dir);
                c
            }
        };
        let sshd = sshd
            .args(sshd_args)
            .arg(base.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(base.join("sshd.log")).unwrap())
            .spawn()
            .expect("starting /usr/sbin/sshd (Debian: openssh-server)");
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "sshd did not start: {}",
                std::fs::read_to_string(base.join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let view = match disk_mib {
            None => dir.clone(),
            Some(_) => PathBuf::from(format!("/proc/{}/root", sshd.id()))
                .join(dir.strip_prefix("/").unwrap()),
        };
        // The board: a Pi 4 whose service lives in the hostile folder and
        // runs as this user.
        let boards = base.join("boards");
        std::fs::create_dir_all(&boards).unwrap();
        let rpi4 = std::fs::read_to_string(workspace().join("boards/rpi4.toml")).unwrap();
        let mut profile: toml::Table = rpi4.parse().unwrap();
        let deploy = profile["deploy"].as_table_mut().unwrap();
        deploy.insert("service_dir".into(), dir.display().to_string().into());
        deploy.insert("user".into(), user.into());
        let board = boards.join("rpi4.toml");
        std::fs::write(&board, toml::to_string(&profile).unwrap()).unwrap();
        Device {
            root,
            sshd,
            dir,
            view,
            ssh_config,
            board,
        }
    }

    /// Runs `words` on `host` over SSH, with edge-deploy's own client.
    pub(crate) fn ssh(&self, host: &str, words: &[&str]) -> Output {
        let ssh = edgewise_deploy::ssh::Ssh::new(
            host,
            vec!["-F".into(), self.ssh_config.display().to_string()],
        )
        .unwrap();
        ssh.command(words).output().unwrap()
    }

    /// The releases on the device, sorted.
    pub(crate) fn releases(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.view.join("releases"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        let dir = self.dir.display().to_string();
        self.ssh(
            "device",
            &[
                "sh",
                "-c",
                r#"kill "$(cat "$1/run/edgewise.pid")""#,
                "stop",
                &dir,
            ],
        );
        let _ = self.sshd.kill();
        let _ = self.sshd.wait();
    }
}

/// A TCP proxy to `port` that cuts each connection once the client has sent
/// `budget` bytes: an upload interrupted by the network.
fn cutting_proxy(port: u16, budget: usize) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { return };
            let Ok(mut server) = TcpStream::connect(("127.0.0.1", port)) else {
                return;
            };
            let (mut client_reader, mut server_writer) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let mut sent = 0;
                let mut buf = [0u8; 16384];
                while sent < budget {
                    match client_reader.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if server_writer.write_all(&buf[..n]).is_err() {
                                break;
                            }
                            sent += n;
                        }
                    }
                }
                let _ = client_reader.shutdown(Shutdown::Both);
                let _ = server_writer.shutdown(Shutdown::Both);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut server, &mut client);
            });
        }
    });
    proxy_port
}
