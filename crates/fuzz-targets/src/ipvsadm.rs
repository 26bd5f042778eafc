//! ipvsadm command lines (what `rvsadm` and `rvsadm -R` read): each input line is split as
//! `ipvsadm -R` splits it and parsed with name lookups off. A line that parses to a command
//! parses the same way again (no hidden state).

use control::ipvsadm::args::parse;
use control::ipvsadm::resolve::NoResolver;
use control::ipvsadm::restore::line_to_argv;

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for (i, line) in text.lines().take(64).enumerate() {
        let argv = line_to_argv("ipvsadm", line);
        // The first line as a command line, the others as -R input (a nested -R is refused).
        let stdin = i > 0;
        let first = parse(&argv, stdin, &NoResolver);
        assert_eq!(first, parse(&argv, stdin, &NoResolver), "{line:?} parses two ways");
    }
}
