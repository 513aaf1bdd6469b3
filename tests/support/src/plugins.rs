//! The plugin components, built once per test process by
//! `scripts/build-plugins.sh` (the same command `make plugins` runs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::{Error, Result, repo_root, shared};

/// The built `.wasm` components, by crate name (e.g. `druid-plugin-local`),
/// shipped and test-only ones alike.
pub struct PluginComponents {
    dir: PathBuf,
    components: BTreeMap<String, PathBuf>,
}

impl PluginComponents {
    /// The directory the components are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The component of crate `name`; fails the test if it was not built.
    pub fn get(&self, name: &str) -> &Path {
        match self.components.get(name) {
            Some(path) => path,
            None => panic!(
                "no component for `{name}` in {}; built: {:?}",
                self.dir.display(),
                self.components.keys().collect::<Vec<_>>()
            ),
        }
    }

    /// Every component, by crate name.
    pub fn all(&self) -> &BTreeMap<String, PathBuf> {
        &self.components
    }
}

/// Builds every plugin crate to a component (once per test process; the
/// build itself is incremental and locked against concurrent runs) and
/// returns where they are.
pub fn plugin_components() -> &'static PluginComponents {
    static CELL: OnceLock<std::result::Result<PluginComponents, String>> = OnceLock::new();
    shared(&CELL, build)
}

fn build() -> Result<PluginComponents> {
    let script = repo_root().join("scripts/build-plugins.sh");
    let command = format!("bash {}", script.display());
    let output = Command::new("bash")
        .arg(&script)
        .output()
        .map_err(Error::io(format!("cannot run {command}")))?;
    if !output.status.success() {
        return Err(Error::PluginBuild {
            command,
            reason: format!(
                "{}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ),
        });
    }
    // The script prints the output directory as its last line of stdout.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let dir = stdout
        .lines()
        .last()
        .map(|l| PathBuf::from(l.trim()))
        .ok_or_else(|| Error::PluginBuild {
            command: command.clone(),
            reason: "printed no output directory".into(),
        })?;
    let mut components = BTreeMap::new();
    // Shipped plugins, then the test-only ones (hostile plugins) beside them.
    for d in [dir.clone(), dir.join("test-only")] {
        let entries =
            std::fs::read_dir(&d).map_err(Error::io(format!("cannot list {}", d.display())))?;
        for entry in entries.filter_map(|e| e.ok()) {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "wasm")
                && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
            {
                components.insert(stem.replace('_', "-"), path.clone());
            }
        }
    }
    Ok(PluginComponents { dir, components })
}
