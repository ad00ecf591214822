//! An instance's own network: a namespace with only its loopback interface, up. Nothing
//! outside is reachable from it — not the control plane, not other instances, not the
//! internet — and the server reaches the instance's Runtime API through a listener the
//! jailer makes inside and hands back over its control socket.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

/// Brings up `lo` in the current network namespace.
pub(crate) fn loopback_up() -> io::Result<()> {
    use nix::libc::{ifreq, ioctl, IFF_RUNNING, IFF_UP, SIOCSIFFLAGS};
    let socket = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: `ifreq` is plain data; all zeroes is a valid value.
    let mut request: ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *slot = *byte as nix::libc::c_char;
    }
    request.ifr_ifru.ifru_flags = (IFF_UP | IFF_RUNNING) as nix::libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads one `ifreq`, which lives across the call.
    if unsafe { ioctl(socket.as_raw_fd(), SIOCSIFFLAGS, &request) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends `file`'s descriptor over the Unix socket `socket` (with one byte of data).
pub(crate) fn send_fd(socket: RawFd, file: &impl AsRawFd) -> io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let fds = [file.as_raw_fd()];
    let iov = [io::IoSlice::new(b"L")];
    sendmsg::<()>(
        socket,
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )?;
    Ok(())
}
