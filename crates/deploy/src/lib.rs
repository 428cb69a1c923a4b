//! Getting a detector onto a board: cross-build the binaries for it
//! ([`build`]), pack them with the model into a checksummed, versioned
//! archive ([`bundle`]), and install that as a new release on devices over
//! SSH, with a health check and rollback ([`push`]).
//!
//! Everything that runs on a device goes through the system's OpenSSH client
//! ([`ssh`]), every argument quoted for the remote shell ([`quote`]); the
//! device side is one POSIX shell script ([`device::SCRIPT`]).

pub mod build;
pub mod bundle;
pub mod device;
pub mod flash;
pub mod push;
pub mod quote;
pub mod ssh;
pub mod unit;

use std::path::{Path, PathBuf};

/// What can go wrong, each naming the thing and what to do.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// A board profile problem.
    #[error(transparent)]
    Board(#[from] edgewise_boards::BoardError),
    /// A triple the board does not build for.
    #[error("board `{board}` has no target `{triple}`; it builds for {known}")]
    UnknownTarget {
        /// The board.
        board: String,
        /// The triple asked for.
        triple: String,
        /// The triples it has.
        known: String,
    },
    /// Pieces of the cross toolchain are missing.
    #[error("cannot build for {board} ({triple}); missing:\n  {missing}")]
    Toolchain {
        /// The board.
        board: String,
        /// The triple.
        triple: String,
        /// What is missing, one per line, with the command that installs it.
        missing: String,
    },
    /// A build failed.
    #[error("build failed:\n{0}")]
    Build(String),
    /// An external program could not run or failed.
    #[error("{tool}: {message}")]
    Tool {
        /// The program.
        tool: String,
        /// What it said.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A bundle is malformed or does not match its checksums.
    #[error("bundle {path}: {message}")]
    Bundle {
        /// The archive.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Bad input from the user.
    #[error("{0}")]
    Invalid(String),
}

impl DeployError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> DeployError {
        DeployError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Writes `bytes` to `path` through a temporary file in the same folder and
/// a rename, so that `path` is either its old self or complete.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), DeployError> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(|e| DeployError::io(dir, e))?;
    file.write_all(bytes)
        .and_then(|_| file.as_file().sync_all())
        .map_err(|e| DeployError::io(path, e))?;
    file.persist(path)
        .map_err(|e| DeployError::io(path, e.error))?;
    Ok(())
}
