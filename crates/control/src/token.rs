//! The TCP API's bearer token, taken the two ways that keep it off a command line (where any
//! local user reads it from `/proc/PID/cmdline`): a file only its owner can read
//! (`--api-token-file PATH`), or the environment variable [`TOKEN_ENV`] (`/proc/PID/environ`
//! is readable by the process's own user and root only). Shared by rvsd and rvsadm.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Environment variable holding the token.
pub const TOKEN_ENV: &str = "RVS_API_TOKEN";

/// What to say when `--api-token SECRET` is given on a command line.
pub const ON_COMMAND_LINE: &str = "--api-token is refused: a token on the command line is readable by every \
     local user (/proc/PID/cmdline); give it with --api-token-file PATH (a file of mode 0600 or 0400) or \
     in the environment variable RVS_API_TOKEN";

/// Reads the token from `path`: refused when the file is missing, empty, not a regular file,
/// readable or writable by group or others, or owned by someone other than root or us (who
/// could change it under us). Surrounding white space (a trailing newline) is not part of it.
pub fn from_file(path: &Path) -> Result<String, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("--api-token-file {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("--api-token-file {shown}: not a regular file"));
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "--api-token-file {shown}: mode {mode:04o} lets group or others read or write the token; \
             chmod 600 {shown}"
        ));
    }
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != 0 && meta.uid() != me {
        return Err(format!("--api-token-file {shown}: owned by uid {}, not by root or uid {me}", meta.uid()));
    }
    let raw = std::fs::read(path).map_err(|e| format!("--api-token-file {shown}: {e}"))?;
    let token = String::from_utf8(raw).map_err(|_| format!("--api-token-file {shown}: not UTF-8"))?;
    check(token.trim()).map_err(|e| format!("--api-token-file {shown}: {e}"))
}

/// The token from the environment value `v` (of [`TOKEN_ENV`]).
pub fn from_env_value(v: &str) -> Result<String, String> {
    check(v.trim()).map_err(|e| format!("{TOKEN_ENV}: {e}"))
}

/// A usable token: not empty, one line of visible ASCII (it travels in a header).
fn check(t: &str) -> Result<String, String> {
    if t.is_empty() {
        return Err("the token is empty".into());
    }
    if !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the token must be printable ASCII without spaces".into());
    }
    Ok(t.to_string())
}

/// The token from `file` if given, else from `env` (the value of [`TOKEN_ENV`]); `Ok(None)`
/// when neither is given. Giving both is refused: one source, no surprise about which wins.
pub fn resolve(file: Option<&Path>, env: Option<&str>) -> Result<Option<String>, String> {
    match (file, env) {
        (Some(_), Some(_)) => {
            Err(format!("--api-token-file and {TOKEN_ENV} are both given; give the token one way only"))
        }
        (Some(f), None) => from_file(f).map(Some),
        (None, Some(v)) => from_env_value(v).map(Some),
        (None, None) => Ok(None),
    }
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timings (the
/// length is not secret).
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn file(name: &str, body: &[u8], mode: u32) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("rvs-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn a_private_file_gives_the_token_and_an_open_one_is_refused() {
        assert_eq!(from_file(&file("ok", b"s3cret\n", 0o600)).unwrap(), "s3cret");
        assert_eq!(from_file(&file("ro", b"  t0k  ", 0o400)).unwrap(), "t0k");
        for mode in [0o640, 0o604, 0o620, 0o602, 0o644] {
            let e = from_file(&file(&format!("m{mode:o}"), b"x", mode)).unwrap_err();
            assert!(e.contains("group or others") && e.contains("chmod 600"), "{mode:o}: {e}");
        }
        let e = from_file(&file("empty", b"\n", 0o600)).unwrap_err();
        assert!(e.contains("empty"), "{e}");
        let e = from_file(&file("space", b"a b", 0o600)).unwrap_err();
        assert!(e.contains("printable"), "{e}");
        let e = from_file(Path::new("/nonexistent/rvs-token")).unwrap_err();
        assert!(e.contains("/nonexistent/rvs-token") && e.contains("No such file"), "{e}");
        let e = from_file(&std::env::temp_dir()).unwrap_err();
        assert!(e.contains("not a regular file") || e.contains("group or others"), "{e}");
    }

    #[test]
    fn one_source_at_a_time() {
        assert_eq!(resolve(None, None).unwrap(), None);
        assert_eq!(resolve(None, Some("abc\n")).unwrap().as_deref(), Some("abc"));
        assert!(resolve(None, Some("")).unwrap_err().contains("RVS_API_TOKEN: the token is empty"));
        let f = file("both", b"x", 0o600);
        assert!(resolve(Some(&f), Some("y")).unwrap_err().contains("one way only"));
        assert_eq!(resolve(Some(&f), None).unwrap().as_deref(), Some("x"));
    }

    #[test]
    fn comparison() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd") && !same(b"ab", b"abc") && !same(b"", b"a"));
        assert!(ON_COMMAND_LINE.contains("--api-token-file") && ON_COMMAND_LINE.contains(TOKEN_ENV));
    }
}
