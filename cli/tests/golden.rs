//! Golden tests of the `tcodec` binary with trycmd: help texts, the `keys`
//! commands on a keyring under a local master key, and the errors a user can
//! cause. The cases are in `tests/cmd/`: `*.toml` one command each, `*.trycmd`
//! a session of commands run in a copy of its `*.in/` folder.
//! `TRYCMD=overwrite cargo test -p tcodec-cli --test golden` rewrites them.

#[test]
fn single_commands() {
    trycmd::TestCases::new().case("tests/cmd/*.toml");
}

#[test]
fn keyring_sessions() {
    // Git keeps no mode but the executable bit; a master key file must be
    // its owner's alone, and trycmd copies the mode into the sandbox.
    for key in ["master.key", "other.key"] {
        let path = std::path::Path::new("tests/cmd/keys.in").join(key);
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    trycmd::TestCases::new()
        .env("TCODEC_KEYRING", "keyring.json")
        .env("TCODEC_MASTER_KEY_FILE", "master.key")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .case("tests/cmd/*.trycmd");
}
