//! The device side of a deployment: one POSIX shell script (`device.sh`),
//! sent over SSH with each command, so a device needs nothing installed
//! beforehand but a shell and coreutils.

/// The script; its header documents the commands and exit codes.
pub const SCRIPT: &str = include_str!("device.sh");

/// What an exit code of [`SCRIPT`] means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Done,
    /// The device folder cannot be written.
    CannotWrite,
    /// Not enough free space.
    NoSpace,
    /// A checksum failed; nothing changed.
    Corrupt,
    /// The new release failed its health check; the previous one runs again.
    RolledBack,
    /// It failed and nothing could be restored.
    Broken,
    /// Anything else (the connection failed: ssh exits 255).
    Other(i32),
}

impl Outcome {
    /// The meaning of exit `code`.
    pub fn from_code(code: i32) -> Outcome {
        match code {
            0 => Outcome::Done,
            3 => Outcome::CannotWrite,
            4 => Outcome::NoSpace,
            10 => Outcome::Corrupt,
            11 => Outcome::RolledBack,
            12 => Outcome::Broken,
            other => Outcome::Other(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_parses_as_posix_shell() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.sh");
        std::fs::write(&path, SCRIPT).unwrap();
        for shell in ["sh", "bash"] {
            let status = std::process::Command::new(shell)
                .arg("-n")
                .arg(&path)
                .status()
                .unwrap();
            assert!(status.success(), "{shell} -n device.sh");
        }
    }

    #[test]
    fn every_exit_code_the_script_uses_has_a_meaning() {
        for line in SCRIPT.lines() {
            if let Some(rest) = line.trim().strip_prefix("fail ") {
                let code: i32 = rest.split(' ').next().unwrap().parse().unwrap();
                assert!(
                    !matches!(Outcome::from_code(code), Outcome::Other(_)) || code == 2,
                    "exit code {code} in `{line}`"
                );
            }
        }
    }
}
