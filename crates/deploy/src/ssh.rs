//! The system's OpenSSH client, so the user's keys, agent, `~/.ssh/config`
//! and known hosts keep working. Host key checking stays on; batch mode
//! makes a host that wants a password fail instead of waiting for one.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::{DeployError, device, quote};

/// How to reach one device.
#[derive(Clone, Debug)]
pub struct Ssh {
    /// `user@host`, or a `Host` of the SSH configuration.
    pub host: String,
    /// Options for `ssh` placed before the host (`-F FILE`, `-p PORT`, ...).
    pub options: Vec<String>,
}

impl Ssh {
    /// A connection to `host` with extra `ssh` options. A host starting with
    /// `-` would be read as an option: refused.
    pub fn new(host: &str, options: Vec<String>) -> Result<Ssh, DeployError> {
        if host.is_empty() || host.starts_with('-') || host.chars().any(char::is_whitespace) {
            return Err(DeployError::Invalid(format!(
                "`{host}` is not an SSH destination (user@host, or a Host from ~/.ssh/config)"
            )));
        }
        Ok(Ssh {
            host: host.to_string(),
            options,
        })
    }

    /// `ssh` ready to run `words` on the device (each word quoted for the
    /// remote shell, which reads the command as one string).
    pub fn command<S: AsRef<str>>(&self, words: &[S]) -> Command {
        let mut command = Command::new("ssh");
        command
            .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=20"])
            .args([
                "-o",
                "ServerAliveInterval=10",
                "-o",
                "ServerAliveCountMax=3",
            ])
            .args(&self.options)
            .arg("--")
            .arg(&self.host)
            .arg(quote::shell_line(words));
        command
    }

    /// Runs [`device::SCRIPT`] on the device with `args`; its exit code and output.
    pub fn script<S: AsRef<str>>(&self, args: &[S]) -> Result<Output, DeployError> {
        let mut words = vec!["sh".to_string(), "-s".into(), "--".into()];
        words.extend(args.iter().map(|a| a.as_ref().to_string()));
        let mut child = self
            .command(&words)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.tool_error(e))?;
        // A device that hangs up early closes the pipe: its exit status says why.
        let _ = child
            .stdin
            .take()
            .expect("piped")
            .write_all(device::SCRIPT.as_bytes());
        child.wait_with_output().map_err(|e| self.tool_error(e))
    }

    /// Copies `local` to `remote` on the device, through `cat` on the
    /// device's side of the connection.
    pub fn upload(&self, local: &Path, remote: &str) -> Result<Output, DeployError> {
        let file = std::fs::File::open(local).map_err(|e| DeployError::io(local, e))?;
        let words = ["sh", "-c", "cat > \"$1\"", "upload", remote];
        self.command(&words)
            .stdin(file)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| self.tool_error(e))
    }

    fn tool_error(&self, e: std::io::Error) -> DeployError {
        DeployError::Tool {
            tool: "ssh".into(),
            message: format!(
                "{}: {e}; install OpenSSH's client (`sudo apt-get install openssh-client`)",
                self.host
            ),
        }
    }
}

/// The last lines of a command's standard error, for messages.
pub fn stderr_tail(output: &Output) -> String {
    let text = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(12)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_destination_that_looks_like_an_option_is_refused() {
        for bad in ["-oProxyCommand=touch /tmp/x", "", "a b"] {
            assert!(Ssh::new(bad, vec![]).is_err(), "{bad}");
        }
        assert!(Ssh::new("pi@raspberrypi.local", vec![]).is_ok());
    }

    #[test]
    fn the_remote_command_is_one_quoted_string_after_the_host() {
        let ssh = Ssh::new("pi@board", vec!["-F".into(), "cfg file".into()]).unwrap();
        let command = ssh.command(&["sh", "-c", "x", "a b; $(y)"]);
        let args: Vec<String> = command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let at = args.iter().position(|a| a == "--").unwrap();
        assert_eq!(args[at - 2..at], ["-F", "cfg file"]);
        assert_eq!(args[at + 1..], ["pi@board", "sh -c x 'a b; $(y)'"]);
    }
}
