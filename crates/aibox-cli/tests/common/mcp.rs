//! An MCP client over streamable HTTP, as a test drives `/mcp`.

use super::server::http;
use serde_json::{json, Value};

/// An MCP client over streamable HTTP with whatever credentials the
/// headers carry (a bearer key, or a dashboard session's cookie and CSRF
/// token).
pub struct Mcp {
    addr: String,
    headers: Vec<(String, String)>,
    session: Option<String>,
    next: u64,
}

impl Mcp {
    pub fn connect(addr: &str, credentials: &[(&str, &str)]) -> Result<Mcp, (u16, String)> {
        let mut m = Mcp {
            addr: addr.to_string(),
            headers: credentials
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            session: None,
            next: 1,
        };
        let init = m.post(
            json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "aibox-test", "version": "0"}}}),
        );
        if init.status != 200 {
            return Err((init.status, init.text()));
        }
        m.session = init.header("mcp-session-id").map(str::to_string);
        let r = m.post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        assert!(r.status < 300, "initialized: {} {}", r.status, r.text());
        Ok(m)
    }

    pub fn post(&self, msg: Value) -> super::server::Raw {
        let mut h: Vec<(&str, &str)> = vec![
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("mcp-protocol-version", "2025-06-18"),
        ];
        for (k, v) in &self.headers {
            h.push((k, v));
        }
        if let Some(s) = &self.session {
            h.push(("mcp-session-id", s));
        }
        http(&self.addr, "POST", "/mcp", &h, msg.to_string().as_bytes())
    }

    /// A tool's result: (is_error, its text).
    pub fn tool(&mut self, name: &str, args: Value) -> (bool, String) {
        let id = self.next;
        self.next += 1;
        let r = self.post(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": name, "arguments": args}}));
        assert_eq!(r.status, 200, "{}", r.text());
        let text = r.text();
        let reply = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .chain(serde_json::from_str::<Value>(&text).ok())
            .find(|v| v["id"] == id)
            .unwrap_or_else(|| panic!("no reply to {name} in {text}"));
        let result = &reply["result"];
        let words: Vec<&str> = result["content"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["text"].as_str())
            .collect();
        (result["isError"] == true, words.join("\n"))
    }
}
