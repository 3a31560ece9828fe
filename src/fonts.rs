//! Fonts for drawing SVG text, loaded once at start-up.
//!
//! Owns: reading font files (TrueType/OpenType, collections too) from the configured folders
//! into the database the sanitizer library draws SVG text with — the library itself reads no
//! files.
//! Invariants: bounded — folders are walked at most [`MAX_DEPTH`] deep, files over
//! [`MAX_FILE_BYTES`] are skipped, loading stops at [`MAX_TOTAL_BYTES`]; a missing or unreadable
//! folder only means fewer fonts (and SVG with text is then held, never drawn blank).
//! Must never: fail start-up.

use std::path::{Path, PathBuf};

use mukaika_sanitizers::fontdb::Database;

const MAX_DEPTH: usize = 8;
const MAX_FILE_BYTES: u64 = 64 << 20;
const MAX_TOTAL_BYTES: u64 = 512 << 20;

/// Where fonts are looked for when the configuration does not say.
pub fn default_dirs() -> Vec<PathBuf> {
    vec![PathBuf::from("/usr/share/fonts")]
}

/// A font source for the sanitizer library: loads `dirs` when the first SVG with text needs
/// them (most gateways never pay the fonts' memory).
pub fn source(dirs: Vec<PathBuf>) -> mukaika_sanitizers::svg::FontSource {
    Box::new(move || load(&dirs))
}

/// Loads every font file under `dirs`.
pub fn load(dirs: &[PathBuf]) -> Database {
    let mut db = Database::new();
    let mut total = 0u64;
    for dir in dirs {
        walk(dir, 0, &mut db, &mut total);
    }
    tracing::info!(faces = db.len(), bytes = total, "fonts loaded for SVG text");
    db
}

fn walk(dir: &Path, depth: usize, db: &mut Database, total: &mut u64) {
    if depth > MAX_DEPTH {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        tracing::debug!(dir = %dir.display(), "font folder not readable");
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            walk(&path, depth + 1, db, total);
            continue;
        }
        let font = path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
            matches!(
                e.to_ascii_lowercase().as_str(),
                "ttf" | "otf" | "ttc" | "otc"
            )
        });
        let size = std::fs::metadata(&path)
            .map(|m| m.len())
            .unwrap_or(u64::MAX);
        if !font || size > MAX_FILE_BYTES || *total + size > MAX_TOTAL_BYTES {
            continue;
        }
        if let Ok(bytes) = std::fs::read(&path) {
            *total += size;
            db.load_font_data(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_fonts_from_a_folder_and_survives_a_missing_one() {
        let db = load(&[
            PathBuf::from("/nonexistent/fonts"),
            PathBuf::from("/usr/share/fonts/opentype/ipaexfont-gothic"),
        ]);
        assert!(!db.is_empty(), "tests/ci.sh installs fonts-ipaexfont");
    }
}
