//! The `egress` network policy: a host bridge, one veth per pooled namespace, masquerading of
//! outbound traffic, and firewall rules that keep the host and other containers unreachable.

use std::os::fd::OwnedFd;

use crate::error::{Error, Result};

/// Host-side plumbing shared by every egress namespace.
#[derive(Debug)]
pub struct Egress {
    _private: (),
}

impl Egress {
    /// Sets up the bridge and firewall, or says why it cannot.
    pub fn setup(_instance: &str) -> Result<Self> {
        Err(Error::Egress(
            "not implemented yet: only the `none` policy is available".into(),
        ))
    }

    /// Connects the namespace `ns` (the calling thread is inside it) to the bridge.
    pub fn wire(&self, _ns: &OwnedFd) -> std::io::Result<()> {
        Err(std::io::Error::other("egress is not implemented"))
    }

    /// Removes the bridge and firewall rules.
    pub fn teardown(&self) {}
}
