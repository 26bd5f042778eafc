//! Small system look-ups for setting the data path up.

use std::io;

/// Interface index by name.
pub fn if_index(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in name"))?;
    // SAFETY: valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 { Err(io::Error::last_os_error()) } else { Ok(i) }
}

/// Receive queues of a device (`/sys/class/net/NAME/queues/rx-N`); 1 if unknown.
pub fn rx_queues(name: &str) -> u32 {
    let Ok(rd) = std::fs::read_dir(format!("/sys/class/net/{name}/queues")) else { return 1 };
    let n = rd.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().starts_with("rx-")).count();
    (n as u32).max(1)
}
