//! The broker's HTTP API as warrenctl uses it: one blocking request per
//! call (ureq), RabbitMQ's `{"error","reason"}` bodies turned into a
//! [`Failure`] with rabbitmqctl-like exit codes.

use base64::Engine;
use serde_json::Value;
use std::io::Write;

/// Why a command failed, and its exit code.
pub struct Failure {
    pub code: u8,
    pub message: String,
}

pub fn fail(code: u8, message: String) -> Failure {
    Failure { code, message }
}

/// The broker's HTTP API.
pub struct Client {
    base: String,
    auth: String,
    agent: ureq::Agent,
}

/// Percent-encodes one path segment (`/` is `%2F`).
pub fn seg(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{:02X}", b));
        }
    }
    out
}

impl Client {
    pub fn new(host: &str, port: u16, user: &str, password: &str) -> Client {
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", user, password));
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{}]", host)
        } else {
            host.to_string()
        };
        Client {
            base: format!("http://{}:{}", host, port),
            auth: format!("Basic {}", token),
            agent: ureq::AgentBuilder::new()
                .timeout(std::time::Duration::from_secs(60))
                .build(),
        }
    }

    /// One request; the body of a 2xx answer, or the failure.
    pub fn call(&self, method: &str, path: &str, body: Option<&str>) -> Result<String, Failure> {
        self.request(method, path, body, &[])
    }

    /// A bodiless request with extra headers (`X-Reason`).
    pub fn call_with_headers(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<String, Failure> {
        self.request(method, path, None, headers)
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Result<String, Failure> {
        let mut req = self
            .agent
            .request(method, &format!("{}{}", self.base, path))
            .set("Authorization", &self.auth);
        for (k, v) in headers {
            req = req.set(k, v);
        }
        let res = match body {
            Some(b) => req.set("Content-Type", "application/json").send_string(b),
            None => req.call(),
        };
        match res {
            Ok(r) => r
                .into_string()
                .map_err(|e| fail(1, format!("reading the answer: {}", e))),
            Err(ureq::Error::Status(status, r)) => {
                let text = r.into_string().unwrap_or_default();
                let reason = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|j| {
                        let reason = match &j["reason"] {
                            Value::String(s) => s.clone(),
                            Value::Null => return None,
                            other => other.to_string(),
                        };
                        Some(format!(
                            "{} ({})",
                            reason,
                            j["error"].as_str().unwrap_or("error")
                        ))
                    })
                    .unwrap_or(text);
                Err(fail(
                    1,
                    format!("{} {}: {} {}", method, path, status, reason),
                ))
            }
            Err(e) => Err(fail(
                69,
                format!("cannot reach the HTTP API at {}: {}", self.base, e),
            )),
        }
    }

    pub fn get(&self, path: &str) -> Result<Value, Failure> {
        let text = self.call("GET", path, None)?;
        serde_json::from_str(&text).map_err(|e| fail(1, format!("GET {}: {}", path, e)))
    }

    pub fn put(&self, path: &str, body: &Value) -> Result<(), Failure> {
        self.call("PUT", path, Some(&body.to_string())).map(drop)
    }

    pub fn delete(&self, path: &str) -> Result<(), Failure> {
        self.call("DELETE", path, None).map(drop)
    }
}

/// Writes `s` to stdout.
pub fn print_out(s: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    out.write_all(s.as_bytes())
        .and_then(|_| out.flush())
        .map_err(|e| fail(1, format!("stdout: {}", e)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(super::seg("/"), "%2F");
        assert_eq!(super::seg("a b/c.d"), "a%20b%2Fc.d");
    }
}
