//! SIGTERM/SIGINT as a readable fd (signalfd): the loop polls it next to the
//! sockets, so a stop request is never lost between a check and a sleep.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::sys::{cvt, owned};

/// Blocks SIGTERM and SIGINT for this thread (call before spawning any) and
/// returns a non-blocking signalfd that reports them.
pub fn stop_fd() -> io::Result<OwnedFd> {
    // SAFETY: sigset_t is initialised by sigemptyset before use; the calls
    // only read/write the set we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        owned(libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC))
    }
}

/// Reads one pending signal number from the signalfd, if any.
pub fn read(fd: &OwnedFd) -> io::Result<Option<u32>> {
    // SAFETY: signalfd_siginfo is plain old data.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: `info` is valid for `size` bytes.
    let rc = unsafe { libc::read(fd.as_raw_fd(), (&mut info as *mut libc::signalfd_siginfo).cast(), size) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(None),
            _ => Err(e),
        };
    }
    cvt(rc as libc::c_int)?;
    Ok((rc as usize == size).then_some(info.ssi_signo))
}

/// Name for the log line.
pub fn name(signo: u32) -> &'static str {
    match signo as libc::c_int {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        _ => "signal",
    }
}
