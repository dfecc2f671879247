//! What every test fixture needs: the repository root, free loopback ports,
//! the tools `scripts/setup.sh` installs into `.venv`. Shared by path with the
//! binary's tests (`cli/tests/support`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};

/// The repository root (every test package sits one folder below it).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// A port on 127.0.0.1 nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A tool from the project's venv, which must be there.
pub fn venv_bin(name: &str) -> PathBuf {
    let path = repo_root().join(".venv/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup.sh, which installs the test tools into .venv",
        path.display()
    );
    path
}
