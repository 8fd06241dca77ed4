//! The smallest DNS a sandbox's resolver needs (RFC 1035): read one
//! question, answer it with A records or a refusal. Nothing is forwarded:
//! the server resolves allowed names itself and answers from that, so no
//! query of a sandbox ever reaches another DNS server.

use std::net::Ipv4Addr;

pub const TYPE_A: u16 = 1;
pub const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;

pub const NOERROR: u8 = 0;
pub const SERVFAIL: u8 = 2;
pub const NXDOMAIN: u8 = 3;
pub const NOTIMP: u8 = 4;
pub const REFUSED: u8 = 5;

/// One question from a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub id: u16,
    /// Lower case, without the trailing dot.
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
    /// Where the question ends in the message.
    end: usize,
    flags: u16,
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]))
}

/// A standard query with exactly one question; None for anything else
/// (responses, other opcodes, compressed or oversized names).
pub fn parse_query(b: &[u8]) -> Option<Query> {
    let id = u16_at(b, 0)?;
    let flags = u16_at(b, 2)?;
    let is_response = flags & 0x8000 != 0;
    let opcode = (flags >> 11) & 0xf;
    if is_response || opcode != 0 || u16_at(b, 4)? != 1 {
        return None;
    }
    let mut i = 12;
    let mut labels: Vec<String> = Vec::new();
    loop {
        let len = usize::from(*b.get(i)?);
        i += 1;
        if len == 0 {
            break;
        }
        // 0xC0: a compression pointer, which a question never needs.
        if len > 63 {
            return None;
        }
        let label = b.get(i..i + len)?;
        labels.push(String::from_utf8(label.to_ascii_lowercase()).ok()?);
        i += len;
    }
    let name = labels.join(".");
    if name.len() > 253 {
        return None;
    }
    let qtype = u16_at(b, i)?;
    let qclass = u16_at(b, i + 2)?;
    Some(Query {
        id,
        name,
        qtype,
        qclass,
        end: i + 4,
        flags,
    })
}

impl Query {
    pub fn is_internet(&self) -> bool {
        self.qclass == CLASS_IN
    }
}

/// The response to `q` (asked in `msg`): `rcode`, and A records for
/// `addrs` with `ttl` seconds.
pub fn response(msg: &[u8], q: &Query, rcode: u8, addrs: &[Ipv4Addr], ttl: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(q.end + addrs.len() * 16);
    out.extend_from_slice(&q.id.to_be_bytes());
    // QR, the query's RD, RA; opcode 0.
    let flags = 0x8000 | (q.flags & 0x0100) | 0x0080 | u16::from(rcode & 0xf);
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(addrs.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&msg[12..q.end]);
    for ip in addrs {
        // The name: a pointer to the question's (offset 12).
        out.extend_from_slice(&[0xc0, 0x0c]);
        out.extend_from_slice(&TYPE_A.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&ip.octets());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query as glibc sends it (with an EDNS OPT record).
    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut b = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
        for l in name.split('.') {
            b.push(l.len() as u8);
            b.extend_from_slice(l.as_bytes());
        }
        b.push(0);
        b.extend_from_slice(&qtype.to_be_bytes());
        b.extend_from_slice(&1u16.to_be_bytes());
        b.extend_from_slice(&[0, 0, 0x29, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
        b
    }

    #[test]
    fn parses_a_question_and_answers_it() {
        let msg = query("PyPI.org", TYPE_A);
        let q = parse_query(&msg).unwrap();
        assert_eq!(
            (q.id, q.name.as_str(), q.qtype),
            (0x1234, "pypi.org", TYPE_A)
        );
        assert!(q.is_internet());
        let r = response(&msg, &q, NOERROR, &[Ipv4Addr::new(192, 0, 2, 1)], 30);
        assert_eq!(&r[..4], &[0x12, 0x34, 0x81, 0x80]);
        assert_eq!(&r[4..12], &[0, 1, 0, 1, 0, 0, 0, 0]);
        assert_eq!(
            &r[r.len() - 16..r.len() - 4],
            &[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4]
        );
        assert_eq!(&r[r.len() - 4..], &[192, 0, 2, 1]);
        let r = response(&msg, &q, REFUSED, &[], 0);
        assert_eq!(r[3] & 0xf, REFUSED);
        assert_eq!(&r[6..8], &[0, 0]);
    }

    #[test]
    fn refuses_what_is_not_a_plain_query() {
        let mut msg = query("a.test", TYPE_A);
        assert!(parse_query(&msg[..11]).is_none());
        msg[2] |= 0x80; // a response
        assert!(parse_query(&msg).is_none());
        let mut msg = query("a.test", TYPE_A);
        msg[12] = 0xc0; // a pointer
        assert!(parse_query(&msg).is_none());
        let mut msg = query("a.test", TYPE_A);
        msg[5] = 2; // two questions
        assert!(parse_query(&msg).is_none());
        let long = vec!["a".repeat(63); 5].join(".");
        assert!(parse_query(&query(&long, TYPE_A)).is_none());
        let msg = query("a.test", TYPE_A);
        for cut in 13..msg.len() - 11 {
            let _ = parse_query(&msg[..cut]);
        }
    }
}
