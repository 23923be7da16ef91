//! Advertising the agent over mDNS (`_blit._tcp`), so `blit scan` finds it.
//!
//! Only the interface the agent serves is used: an agent bound to 127.0.0.1 is
//! announced on loopback only (visible to this machine), one bound to an address on
//! that address's interface, one bound to 0.0.0.0 or :: on every interface. The
//! advertisement is withdrawn when the agent stops.

use std::net::{IpAddr, SocketAddr};

use blit_core::discovery::{Advert, SERVICE_TYPE};
use mdns_sd::{IfKind, ServiceDaemon, ServiceInfo};

/// A live advertisement; dropping it says goodbye.
pub struct Advertisement {
    daemon: ServiceDaemon,
    fullname: String,
}

/// This machine's host name, for the instance and host records.
fn host_name() -> String {
    let name = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    if name.is_empty() {
        "blitd".into()
    } else {
        name
    }
}

impl Advertisement {
    /// Announces the agent listening on `control`.
    pub fn start(control: SocketAddr, advert: &Advert) -> anyhow::Result<Advertisement> {
        let daemon = ServiceDaemon::new()?;
        let ip = control.ip();
        if !ip.is_unspecified() {
            daemon.disable_interface(IfKind::All)?;
            daemon.enable_interface(match ip {
                IpAddr::V4(v4) if v4.is_loopback() => IfKind::LoopbackV4,
                IpAddr::V6(v6) if v6.is_loopback() => IfKind::LoopbackV6,
                _ => IfKind::Addr(ip),
            })?;
        }
        let host = format!("{}.local.", host_name());
        let txt = advert.txt();
        let txt: Vec<(&str, &str)> = txt.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let addrs: &[IpAddr] = if ip.is_unspecified() { &[] } else { &[ip] };
        let mut info = ServiceInfo::new(
            SERVICE_TYPE,
            &advert.name,
            &host,
            addrs,
            control.port(),
            &txt[..],
        )?;
        if ip.is_unspecified() {
            info = info.enable_addr_auto();
        }
        let fullname = info.get_fullname().to_owned();
        daemon.register(info)?;
        Ok(Advertisement { daemon, fullname })
    }

    /// The instance name for an agent on `port` of this machine: the host name, with the
    /// port when it is not the default (so several agents on one host stay apart).
    pub fn instance_name(port: u16) -> String {
        match port {
            blit_core::agent_path::DEFAULT_PORT => host_name(),
            p => format!("{}-{p}", host_name()),
        }
    }
}

impl Drop for Advertisement {
    fn drop(&mut self) {
        if let Ok(done) = self.daemon.unregister(&self.fullname) {
            let _ = done.recv_timeout(std::time::Duration::from_secs(1));
        }
        let _ = self.daemon.shutdown();
    }
}
