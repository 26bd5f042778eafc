//! Compiles the XDP steering program (bpf/steer.bpf.c) with Debian's clang into
//! $OUT_DIR/steer.bpf.o, which src/program.rs embeds. Needs the packages `clang`,
//! `libbpf-dev` (bpf/bpf_helpers.h) and `linux-libc-dev` (linux/bpf.h).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = "bpf/steer.bpf.c";
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-env-changed=CLANG");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("steer.bpf.o");
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    // asm/types.h lives in the multiarch directory on Debian.
    let arch = match std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => "x86_64-linux-gnu",
        Ok("aarch64") => "aarch64-linux-gnu",
        Ok("riscv64") => "riscv64-linux-gnu",
        Ok("powerpc64") => "powerpc64le-linux-gnu",
        Ok("s390x") => "s390x-linux-gnu",
        _ => "x86_64-linux-gnu",
    };
    let status = Command::new(&clang)
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
        .arg(format!("-I/usr/include/{arch}"))
        .args(["-c", src, "-o"])
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!(
            "{clang} failed ({s}) compiling {src}: the XDP program needs the Debian packages \
             clang, libbpf-dev and linux-libc-dev (apt-get install clang libbpf-dev linux-libc-dev)"
        ),
        Err(e) => panic!(
            "cannot run {clang} ({e}): building rvs's XDP steering program needs the Debian \
             packages clang, libbpf-dev and linux-libc-dev (apt-get install clang libbpf-dev linux-libc-dev)"
        ),
    }
}
