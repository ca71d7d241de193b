//! The file datastore: every YAML document in a directory (recursively),
//! the embedded default. A directory that fails to load leaves the caller's
//! last good state in force; the error names file, document and field.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use crate::resources::{parse_value, ClusterState, Parsed};
use crate::ConfigError;

/// A loaded directory.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub state: ClusterState,
    /// Documents of kinds kbgp does not read: `file: apiVersion/kind`.
    pub ignored: Vec<String>,
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ConfigError> {
    let rd = std::fs::read_dir(dir).map_err(|e| ConfigError::Io {
        file: dir.display().to_string(),
        source: e,
    })?;
    let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('.') {
            continue;
        }
        if p.is_dir() {
            yaml_files(&p, out)?;
        } else if name.ends_with(".yaml") || name.ends_with(".yml") {
            out.push(p);
        }
    }
    Ok(())
}

/// A cheap fingerprint of the directory's YAML content, to notice changes.
pub fn fingerprint(dir: &Path) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let mut files = Vec::new();
    if yaml_files(dir, &mut files).is_err() {
        return 0;
    }
    for f in files {
        f.hash(&mut h);
        std::fs::read(&f).unwrap_or_default().hash(&mut h);
    }
    h.finish()
}

/// Parse every document of one YAML text into `state`.
pub fn load_str(file: &str, text: &str, loaded: &mut Loaded) -> Result<(), ConfigError> {
    use serde::Deserialize;
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let doc_no = i + 1;
        let err = |msg: String| ConfigError::Document {
            file: file.to_string(),
            doc: doc_no,
            msg,
        };
        let v =
            serde_yaml::Value::deserialize(doc).map_err(|e| err(format!("invalid YAML: {e}")))?;
        if v.is_null() {
            continue;
        }
        // A `kind: List` (as kubectl writes) holds items.
        if v.get("kind").and_then(|k| k.as_str()) == Some("List") {
            for item in v
                .get("items")
                .and_then(|i| i.as_sequence())
                .cloned()
                .unwrap_or_default()
            {
                add(parse_value(item).map_err(&err)?, file, loaded).map_err(&err)?;
            }
            continue;
        }
        add(parse_value(v).map_err(&err)?, file, loaded).map_err(err)?;
    }
    Ok(())
}

fn add(p: Parsed, file: &str, loaded: &mut Loaded) -> Result<(), String> {
    match p {
        Parsed::Resource(r) => loaded.state.insert(*r),
        Parsed::Ignored { api_version, kind } => {
            tracing::info!(file, %api_version, %kind, "ignoring a kind kbgp does not read");
            loaded.ignored.push(format!("{file}: {api_version}/{kind}"));
            Ok(())
        }
    }
}

/// Load every `*.yaml` / `*.yml` below `dir`.
pub fn load_dir(dir: &Path) -> Result<Loaded, ConfigError> {
    let mut files = Vec::new();
    yaml_files(dir, &mut files)?;
    let mut loaded = Loaded::default();
    for f in files {
        let name = f.display().to_string();
        let text = std::fs::read_to_string(&f).map_err(|e| ConfigError::Io {
            file: name.clone(),
            source: e,
        })?;
        load_str(&name, &text, &mut loaded)?;
    }
    Ok(loaded)
}
