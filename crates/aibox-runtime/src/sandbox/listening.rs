//! Which TCP ports processes in a sandbox listen on, read from the host
//! through `/proc/<pid>/net/tcp{,6}`: those files describe the network
//! namespace of the process they belong to, so the sandbox's PID 1 shows
//! the sandbox's sockets without entering anything.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A listening socket: its port and the address it is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Listener {
    pub port: u16,
    pub address: IpAddr,
}

/// TCP state LISTEN in `/proc/net/tcp`.
const LISTEN: &str = "0A";

/// The listening sockets in the network namespace of `pid`, by port.
pub fn listeners(pid: i32) -> std::io::Result<Vec<Listener>> {
    let mut out = Vec::new();
    for file in ["tcp", "tcp6"] {
        match std::fs::read_to_string(format!("/proc/{pid}/net/{file}")) {
            Ok(text) => out.extend(parse(&text)),
            // No IPv6 in this kernel.
            Err(e) if file == "tcp6" && e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The LISTEN lines of one `/proc/net/tcp{,6}` table.
pub fn parse(text: &str) -> Vec<Listener> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1)?;
            let state = fields.nth(1)?;
            if state != LISTEN {
                return None;
            }
            let (addr, port) = local.split_once(':')?;
            Some(Listener {
                port: u16::from_str_radix(port, 16).ok()?,
                address: parse_addr(addr)?,
            })
        })
        .collect()
}

/// The kernel prints addresses as 32-bit words in host byte order.
fn parse_addr(hex: &str) -> Option<IpAddr> {
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok()?;
        Some(w.to_ne_bytes())
    };
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(0)?))),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listeners_of_both_families() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1 1 0 100 0 0 10 0
   1: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0
   2: 0100007F:1F40 0100007F:C350 01 00000000:00000000 00:00000000 00000000  1000        0 3 1 0 20 4 30 10 -1
   3: garbage
";
        assert_eq!(
            parse(v4),
            [
                Listener {
                    port: 8000,
                    address: "127.0.0.1".parse().unwrap()
                },
                Listener {
                    port: 80,
                    address: "0.0.0.0".parse().unwrap()
                },
            ]
        );
        let v6 = "  sl  local_address                         remote_address                        st
   0: 00000000000000000000000001000000:0BB8 00000000000000000000000000000000:0000 0A 00000000:00000000
   1: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000
";
        assert_eq!(
            parse(v6),
            [
                Listener {
                    port: 3000,
                    address: "::1".parse().unwrap()
                },
                Listener {
                    port: 8080,
                    address: "::".parse().unwrap()
                },
            ]
        );
    }

    #[test]
    fn reads_this_process_namespace() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let found = listeners(std::process::id() as i32).unwrap();
        assert!(found.iter().any(|x| x.port == port), "{found:?}");
    }
}
