//! keepalived.conf: the block lexer alone, and the whole import (lexer, parser, validation).
//! Files are served from memory: the input is `/fuzz/keepalived.conf`, an `include` finds
//! nothing, so a fuzz run never reads the machine's files.

use std::path::{Path, PathBuf};

use rvs_config::keepalived::{Loader, Stmt};

const FILE: &str = "/fuzz/keepalived.conf";

fn loader(text: String) -> Loader {
    Loader {
        read: Box::new(move |p: &Path| {
            if p == Path::new(FILE) {
                Ok(text.clone())
            } else {
                Err(std::io::Error::from(std::io::ErrorKind::NotFound))
            }
        }),
        list: Box::new(|_| Ok(Vec::new())),
        warnings: Vec::new(),
        // Fixed, so `@main` / `@^main` lines mean the same on every machine.
        config_id: Some("main".into()),
    }
}

/// Every statement the lexer returns sits on a line of the input.
pub fn lexer(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let lines = text.lines().count();
    let mut l = loader(text.to_string());
    if let Ok(stmts) = l.parse(text, FILE, Some(PathBuf::from("/fuzz"))) {
        check_lines(&stmts, lines);
    }
}

fn check_lines(stmts: &[Stmt], lines: usize) {
    for s in stmts {
        if s.file == FILE {
            assert!((1..=lines).contains(&s.line), "statement {:?} on line {} of {lines}", s.words, s.line);
        }
        assert!(!s.words.is_empty(), "a statement without words on line {}", s.line);
        if let Some(b) = &s.block {
            check_lines(b, lines);
        }
    }
}

/// A configuration that imports is a table ipvsadm reads back; `rvsd --check`'s reading
/// (`check_with`, which goes on after an error) agrees with the daemon's: no error exactly
/// when the import succeeds, and the import's error among those it prints.
pub fn import(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let imported = rvs_config::keepalived::import_with(loader(text.to_string()), Path::new(FILE));
    let checked = rvs_config::keepalived::check_with(loader(text.to_string()), Path::new(FILE));
    match &imported {
        Ok(cfg) => {
            assert!(checked.errors.is_empty(), "imports, but --check says {:?}", checked.errors);
            crate::save_lines_parse(cfg);
        }
        Err(e) => {
            let shown: Vec<String> = checked.errors.iter().map(ToString::to_string).collect();
            assert!(shown.contains(&e.to_string()), "import fails with {e}, --check says {shown:?}");
        }
    }
}
