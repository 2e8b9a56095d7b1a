//! A configuration file for one test (`tether reverse --config FILE`), removed when dropped.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct ConfigFile {
    path: PathBuf,
}

impl ConfigFile {
    pub fn new(text: &str) -> ConfigFile {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "tether-config-{}-{}.toml",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let file = ConfigFile { path };
        file.write(text);
        file
    }

    /// Replaces the file's text at once (a rename, as editors and deploy tools do), so a reload
    /// never reads half a file.
    pub fn write(&self, text: &str) {
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, text).expect("write the config file");
        std::fs::rename(&tmp, &self.path).expect("replace the config file");
    }

    pub fn path(&self) -> String {
        self.path.display().to_string()
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
