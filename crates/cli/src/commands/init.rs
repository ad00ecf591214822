//! `nimbus init DIR --runtime R`: a ready-to-deploy hello function.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;

use crate::ExitCode;

/// Arguments of `nimbus init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Directory to create the function in (must not exist, or be empty).
    pub dir: PathBuf,
    /// Runtime, e.g. python3.12, nodejs20.x, provided.al2023.
    #[arg(long, default_value = "python3.12")]
    pub runtime: String,
}

/// A template file: path, contents, mode.
type File = (&'static str, &'static str, u32);

const PYTHON: &[File] = &[(
    "app.py",
    include_str!("../../../../examples/hello-python/app.py"),
    0o644,
)];
const NODE: &[File] = &[(
    "index.mjs",
    include_str!("../../../../examples/hello-node/index.mjs"),
    0o644,
)];
const PROVIDED: &[File] = &[(
    "bootstrap",
    include_str!("../../../../examples/hello-provided/bootstrap"),
    0o755,
)];

/// Writes the template for `args.runtime` into `args.dir`.
pub fn run(args: InitArgs) -> anyhow::Result<ExitCode> {
    let runtime = nimbus_core::Runtime::parse(&args.runtime).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (files, handler) = match runtime.family() {
        nimbus_core::RuntimeFamily::Python => (PYTHON, "app.handler"),
        nimbus_core::RuntimeFamily::Node => (NODE, "index.handler"),
        nimbus_core::RuntimeFamily::Provided => (PROVIDED, "hello"),
    };
    if args.dir.exists()
        && std::fs::read_dir(&args.dir)
            .with_context(|| format!("reading {}", args.dir.display()))?
            .next()
            .is_some()
    {
        bail!(
            "{} exists and is not empty; choose a new directory",
            args.dir.display()
        );
    }
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    for (name, text, mode) in files {
        let path = args.dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode))?;
    }
    let manifest = crate::manifest::Manifest {
        runtime: Some(runtime.to_string()),
        handler: Some(handler.to_owned()),
        url: Some("none".to_owned()),
        ..Default::default()
    };
    let path = args.dir.join(crate::manifest::FILE);
    std::fs::write(&path, serde_json::to_string_pretty(&manifest)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    let name = args
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "hello".to_owned());
    println!(
        "created a {runtime} function in {dir}\nnext: nimbus deploy {dir} --name {name}",
        dir = args.dir.display()
    );
    Ok(0)
}
