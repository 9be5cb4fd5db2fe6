//! Free loopback ports for processes a test or tool starts itself.
//!
//! Ports are taken below the kernel's ephemeral range (32768 and up on
//! Linux): a port the kernel handed out with `bind(:0)` and that was then
//! released may be given to some client's outgoing connection before the
//! server meant for it binds, and a broker restarted on its old port would
//! collide the same way. Within 20000..32000 the kernel never picks on its
//! own, so the only race left is with another test, which a bind check and
//! a random start make unlikely.

use std::net::TcpListener;

const FIRST: u16 = 20_000;
const LAST: u16 = 32_000;

/// A loopback port nothing listens on right now, below the ephemeral range.
pub fn free_port() -> std::io::Result<u16> {
    let span = u32::from(LAST - FIRST);
    let start = uuid::Uuid::new_v4().as_u128() as u32 % span;
    (0..span)
        .map(|step| FIRST + ((start + step) % span) as u16)
        .find(|port| TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .ok_or_else(|| std::io::Error::other("no free loopback port in 20000..32000"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_free_port_is_below_the_ephemeral_range_and_bindable() {
        let port = free_port().unwrap();
        assert!((FIRST..LAST).contains(&port));
        let held = TcpListener::bind(("127.0.0.1", port)).unwrap();
        assert_ne!(free_port().unwrap(), held.local_addr().unwrap().port());
    }
}
