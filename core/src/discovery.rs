//! What an agent says about itself over mDNS (DNS-SD service `_blit._tcp`), in one place
//! for the agent that advertises it and for `blit scan` that reads it.
//!
//! The TXT record carries `proto` (protocol major.minor), `version` (the build), `tls`
//! and `auth` (`1` when TLS / a token is required) and `modules` (comma-separated names,
//! cut to fit one TXT string). Nothing secret is advertised.

use crate::wire::pb;

/// The DNS-SD service type.
pub const SERVICE_TYPE: &str = "_blit._tcp.local.";
/// Longest value of one TXT entry (a TXT string is at most 255 bytes with its key).
const MAX_TXT_VALUE: usize = 200;

/// An advertised agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    /// Instance name, e.g. the host name.
    pub name: String,
    pub port: u16,
    pub modules: Vec<String>,
    pub tls: bool,
    pub auth: bool,
    /// "major.minor"
    pub protocol: String,
    pub version: String,
}

impl Advert {
    /// An advertisement for this build.
    pub fn new(name: String, port: u16, modules: Vec<String>, tls: bool, auth: bool) -> Advert {
        Advert {
            name,
            port,
            modules,
            tls,
            auth,
            protocol: format!("{}.{}", pb::PROTOCOL_MAJOR, pb::PROTOCOL_MINOR),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }

    /// The TXT entries.
    pub fn txt(&self) -> Vec<(String, String)> {
        let mut modules = String::new();
        for m in &self.modules {
            if modules.len() + m.len() + 1 > MAX_TXT_VALUE {
                modules.push_str(",…");
                break;
            }
            if !modules.is_empty() {
                modules.push(',');
            }
            modules.push_str(m);
        }
        let flag = |b: bool| if b { "1" } else { "0" }.to_owned();
        vec![
            ("proto".into(), self.protocol.clone()),
            ("version".into(), self.version.clone()),
            ("tls".into(), flag(self.tls)),
            ("auth".into(), flag(self.auth)),
            ("modules".into(), modules),
        ]
    }

    /// Reads an advertisement back from its instance name, port and TXT lookup.
    pub fn from_txt<'a>(name: &str, port: u16, get: impl Fn(&str) -> Option<&'a str>) -> Advert {
        let modules = get("modules")
            .unwrap_or_default()
            .split(',')
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
            .collect();
        Advert {
            name: name.to_owned(),
            port,
            modules,
            tls: get("tls") == Some("1"),
            auth: get("auth") == Some("1"),
            protocol: get("proto").unwrap_or_default().to_owned(),
            version: get("version").unwrap_or_default().to_owned(),
        }
    }

    /// The instance name from a full DNS-SD name (`NAME._blit._tcp.local.`).
    pub fn instance(fullname: &str) -> &str {
        fullname
            .strip_suffix(SERVICE_TYPE)
            .map(|n| n.trim_end_matches('.'))
            .unwrap_or(fullname)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txt_round_trip_and_long_module_lists() {
        let a = Advert::new(
            "host".into(),
            9031,
            vec!["a".into(), "b".into()],
            true,
            false,
        );
        let txt = a.txt();
        let get = |k: &str| {
            txt.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(Advert::from_txt("host", 9031, get), a);
        let many: Vec<String> = (0..100).map(|i| format!("module-{i}")).collect();
        let long = Advert::new("h".into(), 1, many, false, true).txt();
        let modules = &long.iter().find(|(k, _)| k == "modules").unwrap().1;
        assert!(modules.len() <= MAX_TXT_VALUE + 4 && modules.ends_with(",…"));
        assert_eq!(Advert::instance("host-1._blit._tcp.local."), "host-1");
    }
}
