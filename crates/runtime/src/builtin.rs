//! Nimbus's own runtime interface clients, shipped inside the binary and written out at start.

use std::path::{Path, PathBuf};

use crate::RuntimeError;

/// The Python runtime client.
const PYTHON_RIC: &str = include_str!("../ric/nimbus_ric.py");
/// The Node.js runtime client.
const NODE_RIC: &str = include_str!("../ric/nimbus_ric.cjs");

/// Where the built-in runtime clients were written.
#[derive(Debug, Clone)]
pub struct BuiltinClients {
    /// The directory holding them (an instance sees it as `/var/runtime`).
    pub dir: PathBuf,
    /// The Python client script (compiled, once [`BuiltinClients::compile_python`] has run).
    pub python: PathBuf,
    /// The Node.js client script.
    pub node: PathBuf,
}

/// Writes the built-in clients into `dir` (replacing older copies) and says where they are.
pub fn install(dir: &Path) -> Result<BuiltinClients, RuntimeError> {
    let err = |source| RuntimeError::Install {
        dir: dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    let clients = BuiltinClients {
        dir: dir.to_owned(),
        python: dir.join("nimbus_ric.py"),
        node: dir.join("nimbus_ric.cjs"),
    };
    for (path, text) in [(&clients.python, PYTHON_RIC), (&clients.node, NODE_RIC)] {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)?;
    }
    Ok(clients)
}

impl BuiltinClients {
    /// Compiles the Python client with `interpreter` (the one functions run under) into a
    /// `.pyc` beside it and runs that from now on: a script given as source is compiled
    /// again at every start, ~6 ms of each cold start. Keeps the source if that fails.
    pub fn compile_python(&mut self, interpreter: &Path) {
        let compiled = self.python.with_extension("pyc");
        let status = std::process::Command::new(interpreter)
            .args([
                "-c",
                "import py_compile, sys; py_compile.compile(sys.argv[1], cfile=sys.argv[2], doraise=True)",
            ])
            .arg(&self.python)
            .arg(&compiled)
            .env_clear()
            .stdin(std::process::Stdio::null())
            .output();
        match status {
            Ok(out) if out.status.success() => self.python = compiled,
            Ok(out) => tracing::warn!(
                interpreter = %interpreter.display(),
                error = %String::from_utf8_lossy(&out.stderr).trim(),
                "could not precompile the Python runtime client; cold starts compile it"
            ),
            Err(e) => tracing::warn!(
                interpreter = %interpreter.display(),
                error = %e,
                "could not precompile the Python runtime client; cold starts compile it"
            ),
        }
    }
}
