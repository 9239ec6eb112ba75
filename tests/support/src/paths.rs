//! Where things are: the workspace, the `spcvm` binary under test, the Python with
//! confluent-kafka, the broker proxy script.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    // This crate is `tests/support/`.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("tests/support/ is two levels below the workspace root")
        .to_path_buf()
}

/// Path of the `spcvm` binary under test: the `spcvm` in the running test binary's profile
/// folder (`target/PROFILE/deps/TEST-HASH` -> `target/PROFILE/spcvm`), where cargo links
/// the binary it builds before running an integration test of the `spcvm` package: the
/// path `env!("CARGO_BIN_EXE_spcvm")` gives such a test (cargo sets that variable when it
/// compiles the test, which this crate is not).
///
/// # Panics
/// When the test binary is not in a `deps/` folder, or there is no `spcvm` next to it.
pub fn spcvm() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test binary's path");
        let profile = exe
            .parent()
            .filter(|dir| dir.ends_with("deps"))
            .and_then(Path::parent)
            .unwrap_or_else(|| {
                panic!(
                    "{} is not in a cargo target's deps/ folder: cannot find spcvm next to it",
                    exe.display()
                )
            });
        let bin = profile.join(format!("spcvm{}", std::env::consts::EXE_SUFFIX));
        assert!(
            bin.is_file(),
            "{} is missing: run the test through cargo (`cargo test -p spcvm`), which builds it",
            bin.display()
        );
        bin
    })
}

/// The Python with confluent-kafka: `SPCVM_PYTHON`, else `.venv/tools/bin/python`.
///
/// # Panics
/// When neither exists, saying how to make it.
pub fn python() -> PathBuf {
    if let Some(path) = std::env::var_os("SPCVM_PYTHON").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.exists(),
            "SPCVM_PYTHON={} does not exist; unset it or run `bash scripts/pyenv.sh`",
            path.display()
        );
        return path;
    }
    let venv = workspace_root().join(".venv/tools/bin/python");
    assert!(
        venv.exists(),
        "no Python with confluent-kafka: {} is missing and SPCVM_PYTHON is not set. \
         Run `bash scripts/pyenv.sh` (it creates .venv/tools and prints the python path), \
         or set SPCVM_PYTHON to a python that can import confluent_kafka.schema_registry.avro",
        venv.display()
    );
    venv
}

/// The TLS and SASL proxy in front of a test broker (`broker_proxy.py`, next to this
/// crate's sources; see `tests/README.md`).
pub fn broker_proxy_py() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("broker_proxy.py")
}
