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
    trycmd::TestCases::new()
        .env("TCODEC_KEYRING", "keyring.json")
        .env("TCODEC_MASTER_KEY_FILE", "master.key")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .case("tests/cmd/*.trycmd");
}
