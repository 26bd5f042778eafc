//! `-R` / `--restore` input handling (ipvsadm-cli.md §10): each stdin line becomes
//! an argv. The loop that runs them lives in `run`.

/// Longest token ipvsadm's config reader keeps; longer runs are split.
pub const MAX_TOKEN: usize = 4096;

/// Splits one input line the way ipvsadm's `config_stream_read` does: on blanks,
/// tabs and CRs, dropping every token that is exactly `ipvsadm`, and prefixing
/// `program` as argv[0]. `#` is *not* a comment.
pub fn line_to_argv(program: &str, line: &str) -> Vec<String> {
    let mut argv = vec![program.to_string()];
    for tok in line.split([' ', '\t', '\r', '\n']).filter(|t| !t.is_empty()) {
        let chars: Vec<char> = tok.chars().collect();
        for chunk in chars.chunks(MAX_TOKEN) {
            let t: String = chunk.iter().collect();
            if t != "ipvsadm" {
                argv.push(t);
            }
        }
    }
    argv
}
