//! `blit scan`: find agents on the local network by mDNS (`_blit._tcp`).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use blit_core::discovery::{Advert, SERVICE_TYPE};
use mdns_sd::{ServiceDaemon, ServiceEvent};

/// One agent found, with the address to use in remote paths.
struct Found {
    advert: Advert,
    addrs: Vec<IpAddr>,
}

/// Browses for `timeout` and prints one line per agent.
pub fn scan(timeout: Duration) -> anyhow::Result<()> {
    let daemon = ServiceDaemon::new().context("starting mDNS")?;
    let events = daemon.browse(SERVICE_TYPE).context("browsing mDNS")?;
    let deadline = Instant::now() + timeout;
    let mut found: BTreeMap<String, Found> = BTreeMap::new();
    while let Ok(event) = events.recv_deadline(deadline) {
        match event {
            ServiceEvent::ServiceResolved(s) => {
                let advert = Advert::from_txt(Advert::instance(&s.fullname), s.port, |k| {
                    s.get_property_val_str(k)
                });
                let mut addrs: Vec<IpAddr> = s.addresses.iter().map(|a| a.to_ip_addr()).collect();
                // The most useful first: IPv4 before IPv6, loopback last.
                addrs.sort_by_key(|a| (a.is_loopback(), a.is_ipv6(), *a));
                found.insert(s.fullname.clone(), Found { advert, addrs });
            }
            ServiceEvent::ServiceRemoved(_, fullname) => {
                found.remove(&fullname);
            }
            _ => {}
        }
    }
    let _ = daemon.shutdown();
    let mut out = std::io::stdout().lock();
    if found.is_empty() {
        eprintln!(
            "no agents answered within {:.1} s (agents bound to 127.0.0.1 are only visible \
             on this machine; blitd --no-mdns does not advertise)",
            timeout.as_secs_f64()
        );
    }
    for f in found.values() {
        let a = &f.advert;
        let address = match f.addrs.first() {
            Some(IpAddr::V6(v6)) => format!("[{v6}]:{}", a.port),
            Some(ip) => format!("{ip}:{}", a.port),
            None => format!("?:{}", a.port),
        };
        let mut flags = Vec::new();
        if a.tls {
            flags.push("tls");
        }
        if a.auth {
            flags.push("token");
        }
        writeln!(
            out,
            "{:<24} {:<22} protocol {:<5} {:<10} modules: {}",
            a.name,
            address,
            a.protocol,
            flags.join(","),
            a.modules.join(", ")
        )?;
    }
    Ok(())
}
