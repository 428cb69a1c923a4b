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
    /// The stream `serve` reads (`edge-run --source`); `None`: it watches
    /// the inbox for images.
    pub source: Option<String>,
}

/// How often a stream service logs its figures (frames, fps, latency).
const STREAM_REPORT_SECONDS: &str = "60";

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
        match &self.source {
            Some(source) => serve.extend([
                "--source".into(),
                source.clone(),
                "--report-every".into(),
                STREAM_REPORT_SECONDS.into(),
            ]),
            None => serve.extend(["--watch".into(), self.inbox()]),
        }
        let mut serve = quote::shell_line(&serve);
        if self.actions {
            serve.push_str(" --actions \"$release/actions.toml\"");
        }
        let args = quote::shell_line(&self.run_args);
        let input = match &self.source {
            Some(source) => format!("the stream {}", source.replace('\n', " ")),
            None => self.inbox().replace('\n', " "),
        };
        format!(
            r#"#!/bin/sh
# An Edgewise release: `run.sh serve` runs the detector on {input} (what
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
        )
    }

    /// The systemd unit running the current release.
    pub fn unit(&self) -> String {
        // `%` in free text is a systemd specifier; newlines would end the line.
        let model = self.model.replace('%', "%%").replace('\n', " ");
        let run = quote::systemd(&format!("{}/current/run.sh", self.dir));
        // A camera's device node belongs to the `video` group.
        let camera = self
            .source
            .as_deref()
            .is_some_and(|s| s.starts_with("/dev/") || s.chars().all(|c| c.is_ascii_digit()));
        let groups = if camera {
            "SupplementaryGroups=video\n"
        } else {
            ""
        };
        format!(
            "[Unit]\n\
             Description=Edgewise detector ({model})\n\
             After=network.target\n\
             \n\
             [Service]\n\
             ExecStart={run} serve\n\
             User={user}\n\
             {groups}\
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
            source: None,
        }
    }

    /// The arguments `run.sh serve` of `service` gives edge-run (a
    /// stand-in that prints them, one per line), with the release folder
    /// as edge-run sees it.
    fn serve_args(service: &Service, dir: &std::path::Path) -> (Vec<String>, String) {
        let release = dir.join("release");
        std::fs::create_dir_all(release.join("bin")).unwrap();
        let echo = release.join("bin/edge-run");
        std::fs::write(
            &echo,
            "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done\n",
        )
        .unwrap();
        std::fs::set_permissions(&echo, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(release.join("run.sh"), service.run_script()).unwrap();
        let out = Command::new("sh")
            .arg(release.join("run.sh"))
            .arg("serve")
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let args = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        (args, release.canonicalize().unwrap().display().to_string())
    }

    #[test]
    fn run_sh_passes_a_hostile_service_dir_as_one_argument() {
        let dir = tempfile::tempdir().unwrap();
        let hostile = "/srv/a b;$(touch pwned)'q";
        let (args, r) = serve_args(&service(hostile), dir.path());
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
    fn a_stream_service_reads_its_source_and_logs_figures_every_minute() {
        let dir = tempfile::tempdir().unwrap();
        let pipeline = "libcamerasrc ! video/x-raw,width=640 ! videoconvert ! appsink name=\"$x\" '; touch pwned'";
        let mut stream = service("/opt/edgewise");
        stream.source = Some(pipeline.into());
        let (args, r) = serve_args(&stream, dir.path());
        assert_eq!(
            args,
            [
                format!("{r}/model/model.toml"),
                "--input-size".into(),
                "320x320".into(),
                "--source".into(),
                pipeline.into(),
                "--report-every".into(),
                "60".into(),
                "--actions".into(),
                format!("{r}/actions.toml"),
            ]
        );
        assert!(!dir.path().join("pwned").exists());
        // A camera's service may open its device node.
        assert!(!stream.unit().contains("SupplementaryGroups"));
        stream.source = Some("/dev/video0".into());
        assert!(
            stream
                .unit()
                .contains("\nSupplementaryGroups=video\nRestart=on-failure\n")
        );
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
