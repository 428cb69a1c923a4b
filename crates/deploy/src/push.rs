//! Installing a bundle as a new release on devices: prepare (room, stale
//! uploads), upload, then activate on the device (checksums, atomic switch
//! of `current`, restart, health check, rollback, old releases pruned). An
//! interrupted push leaves the running release alone; the next push clears
//! what it left.

use std::time::Instant;

use crate::DeployError;
use crate::bundle::Bundle;
use crate::device::Outcome;
use crate::ssh::{Ssh, stderr_tail};

/// How to push.
#[derive(Clone, Debug)]
pub struct Options {
    /// Releases kept on the device, the new one included (at least 2: the
    /// previous release is what a failed push rolls back to).
    pub keep: usize,
    /// Seconds the service must stay up before the health check.
    pub settle_secs: u32,
    /// Extra `ssh` options (`-F FILE`, ...).
    pub ssh_options: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            keep: 3,
            settle_secs: 3,
            ssh_options: vec![],
        }
    }
}

/// A push that went through.
#[derive(Clone, Debug, PartialEq)]
pub struct Pushed {
    /// The release now running.
    pub release: String,
    /// Whether the archive was uploaded (not already on the device).
    pub uploaded: bool,
    /// Old releases removed.
    pub removed: Vec<String>,
    /// What the health check printed.
    pub health: String,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// A push that did not: which step, what the device said, and whether the
/// old release still runs.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{host}: {step} failed: {message}")]
pub struct Failed {
    /// The device.
    pub host: String,
    /// `prepare`, `upload` or `activate`.
    pub step: &'static str,
    /// What the script's exit code means.
    pub outcome: Outcome,
    /// The device's own words.
    pub message: String,
}

impl Failed {
    fn from_output(host: &str, step: &'static str, output: &std::process::Output) -> Failed {
        let code = output.status.code().unwrap_or(-1);
        let mut message = stderr_tail(output);
        if code == 255 && step != "prepare" {
            message.push_str(
                "\n(the connection failed: the release that was running still runs; push again)",
            );
        }
        Failed {
            host: host.to_string(),
            step,
            outcome: Outcome::from_code(code),
            message,
        }
    }
}

/// Pushes `bundle` to `host` (see the module's documentation).
pub fn push(bundle: &Bundle, host: &str, options: &Options) -> Result<Pushed, Failed> {
    let started = Instant::now();
    let failed = |step, message: String| Failed {
        host: host.to_string(),
        step,
        outcome: Outcome::Other(-1),
        message,
    };
    if options.keep < 2 {
        return Err(failed(
            "prepare",
            "--keep must be at least 2: the previous release is what a failed push rolls back to"
                .into(),
        ));
    }
    let ssh = Ssh::new(host, options.ssh_options.clone())
        .map_err(|e| failed("prepare", e.to_string()))?;
    let release = &bundle.release;
    let dir = &release.service_dir;
    let ssh_error = |step, e: DeployError| failed(step, e.to_string());
    let need = bundle.bytes + release.unpacked_bytes;
    let prepared = ssh
        .script(&["prepare", dir, &release.id, &need.to_string()])
        .map_err(|e| ssh_error("prepare", e))?;
    if !prepared.status.success() {
        return Err(Failed::from_output(host, "prepare", &prepared));
    }
    let present = String::from_utf8_lossy(&prepared.stdout).trim() == "present";
    if !present {
        let target = format!("{dir}/releases/.incoming-{}.tar.gz", release.id);
        let uploaded = ssh
            .upload(&bundle.path, &target)
            .map_err(|e| ssh_error("upload", e))?;
        if !uploaded.status.success() {
            return Err(Failed::from_output(host, "upload", &uploaded));
        }
    }
    let activated = ssh
        .script(&[
            "activate",
            dir,
            &release.id,
            &bundle.sha256,
            &options.keep.to_string(),
            &options.settle_secs.to_string(),
        ])
        .map_err(|e| ssh_error("activate", e))?;
    if !activated.status.success() {
        return Err(Failed::from_output(host, "activate", &activated));
    }
    let stdout = String::from_utf8_lossy(&activated.stdout);
    Ok(Pushed {
        release: release.id.clone(),
        uploaded: !present,
        removed: stdout
            .lines()
            .filter_map(|l| l.strip_prefix("removed "))
            .map(str::to_string)
            .collect(),
        health: String::from_utf8_lossy(&activated.stderr)
            .lines()
            .filter(|l| l.starts_with("self-test"))
            .collect::<Vec<_>>()
            .join("\n"),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Pushes `bundle` to every host at once; the results in the hosts' order.
pub fn push_all(
    bundle: &Bundle,
    hosts: &[String],
    options: &Options,
) -> Vec<Result<Pushed, Failed>> {
    std::thread::scope(|scope| {
        let running: Vec<_> = hosts
            .iter()
            .map(|host| scope.spawn(move || push(bundle, host, options)))
            .collect();
        running
            .into_iter()
            .map(|h| h.join().expect("a push thread panicked"))
            .collect()
    })
}

/// Hosts from a fleet file: one SSH destination per line; blank lines and
/// `#` comments skipped.
pub fn read_hosts(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Which release runs on `host` in `dir`, and whether its service is active.
pub fn status(host: &str, dir: &str, ssh_options: &[String]) -> Result<String, DeployError> {
    let ssh = Ssh::new(host, ssh_options.to_vec())?;
    let output = ssh.script(&["status", dir])?;
    if !output.status.success() {
        return Err(DeployError::Tool {
            tool: format!("ssh {host}"),
            message: stderr_tail(&output),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// Runs `edge-bench` on the current release of `host` (`bench_args` added
/// to its command line) and returns its JSON report.
pub fn bench(
    host: &str,
    dir: &str,
    bench_args: &[String],
    ssh_options: &[String],
) -> Result<String, DeployError> {
    let ssh = Ssh::new(host, ssh_options.to_vec())?;
    let mut args = vec!["bench".to_string(), dir.to_string()];
    args.extend(bench_args.iter().cloned());
    let output = ssh.script(&args)?;
    let report = String::from_utf8_lossy(&output.stdout).to_string();
    if !output.status.success() || serde_json::from_str::<serde_json::Value>(&report).is_err() {
        return Err(DeployError::Tool {
            tool: format!("edge-bench on {host}"),
            message: stderr_tail(&output),
        });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_files_skip_comments_and_blank_lines() {
        let text = "# lab\npi@cam-1\n\n  pi@cam-2  # by the door\n#pi@cam-3\n";
        assert_eq!(read_hosts(text), ["pi@cam-1", "pi@cam-2"]);
    }
}
