//! What starts the detector on a board: `run.sh` in each release (the one
//! place that knows edge-run's arguments) and the systemd unit that runs the
//! current release's `run.sh`.

use crate::quote;

/// The systemd service's name.
pub const SERVICE: &str = "edgewise.service";

/// How the detector runs on the board.
#[derive(Clone, Debug, PartialEq)]
pub struct Service {
    /// Where releases live on the board (`/opt/edgewise`).
    pub dir: String,
    /// The user the service runs as.
    pub user: String,
    /// The model's name, for people reading `systemctl status`.
    pub model: String,
    /// edge-run's options for this model (`--input-size 320x320`, `--threads 4`, ...).
    pub run_args: Vec<String>,
    /// Whether the release has an actions file (`actions.toml`).
    pub actions: bool,
}

impl Service {
    /// The folder the service watches for images.
    pub fn inbox(&self) -> String {
        format!("{}/inbox", self.dir)
    }

    /// `run.sh`: `run.sh serve` runs the detector on the inbox (the
    /// service); `run.sh self-test` checks the build against the detections
    /// recorded on the build machine (the health check). Paths are the
    /// release's own, so the script works from any release folder.
    /// `EDGEWISE_EXEC_PREFIX` runs the binaries through a command, such as
    /// `qemu-aarch64` when an x86 machine stands in for the board.
    pub fn run_script(&self) -> String {
        let mut serve = self.run_args.clone();
        serve.push("--watch".into());
        serve.push(self.inbox());
        let mut serve = quote::shell_line(&serve);
        if self.actions {
            serve.push_str(" --actions \"$release/actions.toml\"");
        }
        let args = quote::shell_line(&self.run_args);
        format!(
            r#"#!/bin/sh
# An Edgewise release: `run.sh serve` runs the detector on {inbox} (what
# {SERVICE} starts); `run.sh self-test` checks this build against the
# detections recorded on the build machine.
set -eu
release=$(cd "$(dirname "$0")" && pwd -P)
edge_run="$release/bin/edge-run"
model="$release/model/model.toml"
case "${{1:-serve}}" in
serve) exec ${{EDGEWISE_EXEC_PREFIX:-}} "$edge_run" "$model" {serve} ;;
self-test) exec ${{EDGEWISE_EXEC_PREFIX:-}} "$edge_run" "$model" {args} --self-test "$release/selftest" ;;
*) echo "usage: $0 [serve|self-test]" >&2; exit 2 ;;
esac
"#,
            inbox = self.inbox().replace('\n', " "),
        )
    }

    /// The systemd unit running the current release.
    pub fn unit(&self) -> String {
        // `%` in free text is a systemd specifier; newlines would end the line.
        let model = self.model.replace('%', "%%").replace('\n', " ");
        let run = quote::systemd(&format!("{}/current/run.sh", self.dir));
        format!(
            "[Unit]\n\
             Description=Edgewise detector ({model})\n\
             After=network.target\n\
             \n\
             [Service]\n\
             ExecStart={run} serve\n\
             User={user}\n\
             Restart=on-failure\n\
             RestartSec=2\n\
             \n\
             [Install]\n\
             WantedBy=multi-user.target\n",
            user = quote::systemd(&self.user),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;

    fn service(dir: &str) -> Service {
        Service {
            dir: dir.into(),
            user: "pi".into(),
            model: "ppocr 100%".into(),
            run_args: vec!["--input-size".into(), "320x320".into()],
            actions: true,
        }
    }

    #[test]
    fn run_sh_passes_a_hostile_service_dir_as_one_argument() {
        let dir = tempfile::tempdir().unwrap();
        let release = dir.path().join("release");
        std::fs::create_dir_all(release.join("bin")).unwrap();
        // A stand-in edge-run that prints its arguments, one per line.
        let echo = release.join("bin/edge-run");
        std::fs::write(
            &echo,
            "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done\n",
        )
        .unwrap();
        std::fs::set_permissions(&echo, std::fs::Permissions::from_mode(0o755)).unwrap();
        let hostile = "/srv/a b;$(touch pwned)'q";
        std::fs::write(release.join("run.sh"), service(hostile).run_script()).unwrap();
        let out = Command::new("sh")
            .arg(release.join("run.sh"))
            .arg("serve")
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let real = release.canonicalize().unwrap();
        let args: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        let r = real.display();
        assert_eq!(
            args,
            [
                format!("{r}/model/model.toml"),
                "--input-size".into(),
                "320x320".into(),
                "--watch".into(),
                format!("{hostile}/inbox"),
                "--actions".into(),
                format!("{r}/actions.toml"),
            ]
        );
        assert!(!dir.path().join("pwned").exists());
    }

    #[test]
    fn the_unit_escapes_what_systemd_would_expand() {
        let unit = service("/opt/edge $wise").unit();
        assert!(
            unit.contains("ExecStart=\"/opt/edge $$wise/current/run.sh\" serve\n"),
            "{unit}"
        );
        assert!(
            unit.contains("Description=Edgewise detector (ppocr 100%%)\n"),
            "{unit}"
        );
        assert!(unit.contains("User=\"pi\"\n"), "{unit}");
    }
}
