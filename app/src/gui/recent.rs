//! Recently opened files, kept in `$MEDSEG_CONFIG_DIR` (default `$XDG_CONFIG_HOME/medseg` or
//! `~/.config/medseg`) as `recent.json`, written atomically.

use std::path::{Path, PathBuf};

const MAX: usize = 10;

#[derive(Default)]
pub struct Recent {
    pub paths: Vec<PathBuf>,
    file: Option<PathBuf>,
}

pub fn config_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("MEDSEG_CONFIG_DIR") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CONFIG_HOME") {
        return Some(PathBuf::from(d).join("medseg"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config").join("medseg"))
}

impl Recent {
    /// Reads the list; a missing or unreadable file gives an empty list (it is only a convenience).
    pub fn load() -> Self {
        let file = config_dir().map(|d| d.join("recent.json"));
        let paths = file
            .as_ref()
            .and_then(|f| std::fs::read(f).ok())
            .and_then(|b| serde_json::from_slice::<Vec<PathBuf>>(&b).ok())
            .unwrap_or_default();
        Recent { paths, file }
    }

    /// Moves `path` to the top and saves. Returns a message when saving failed.
    pub fn add(&mut self, path: &Path) -> Option<String> {
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        self.paths.retain(|p| p != &path);
        self.paths.insert(0, path);
        self.paths.truncate(MAX);
        let file = self.file.as_ref()?;
        if let Some(dir) = file.parent() {
            if let Err(e) = std::fs::create_dir_all(dir) {
                return Some(format!(
                    "could not keep the recent-files list in {}: {e}",
                    dir.display()
                ));
            }
        }
        let body = serde_json::to_vec_pretty(&self.paths).ok()?;
        medseg_data::atomic::write_atomic(file, true, |w| w.write_all(&body))
            .err()
            .map(|e| format!("could not save the recent-files list: {e}"))
    }
}
