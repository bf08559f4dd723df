//! A small blocking HTTP client (ureq) for the management API tests
//! (tests/http_api.rs, tests/warrenctl.rs).
#![allow(dead_code)]

use base64::Engine;
use serde_json::Value;

/// One answer: status, `WWW-Authenticate` (if any), body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub www_authenticate: Option<String>,
    /// `Location` (a POST that created something).
    pub location: Option<String>,
    pub body: String,
}

impl Answer {
    /// The body as JSON (panics if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body {:?} is not JSON: {e}", self.body))
    }
}

/// The API of one broker, as one user.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub auth: Option<(String, String)>,
}

impl Api {
    pub fn new(port: u16) -> Api {
        Api {
            base: format!("http://127.0.0.1:{port}"),
            auth: Some(("guest".into(), "guest".into())),
        }
    }

    /// The same API as another user (None: no credentials).
    pub fn as_user(&self, user: Option<(&str, &str)>) -> Api {
        Api {
            base: self.base.clone(),
            auth: user.map(|(u, p)| (u.to_string(), p.to_string())),
        }
    }

    pub fn call(&self, method: &str, path: &str, body: Option<&str>) -> Answer {
        self.call_with_headers(method, path, body, &[])
    }

    /// A request without a body and with one extra header (`X-Reason`…).
    pub fn call_with_header(&self, method: &str, path: &str, header: (&str, &str)) -> Answer {
        self.call_with_headers(method, path, None, &[header])
    }

    pub fn call_with_headers(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let agent = ureq::AgentBuilder::new()
            .timeout(std::time::Duration::from_secs(10))
            .build();
        let mut req = agent.request(method, &format!("{}{}", self.base, path));
        for (k, v) in headers {
            req = req.set(k, v);
        }
        if let Some((u, p)) = &self.auth {
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            req = req.set("Authorization", &format!("Basic {token}"));
        }
        let res = match body {
            Some(b) => req.set("Content-Type", "application/json").send_string(b),
            None => req.call(),
        };
        let resp = match res {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        Answer {
            status: resp.status(),
            www_authenticate: resp.header("www-authenticate").map(str::to_string),
            location: resp.header("location").map(str::to_string),
            body: resp.into_string().unwrap_or_default(),
        }
    }

    pub fn get(&self, path: &str) -> Answer {
        self.call("GET", path, None)
    }

    pub fn put(&self, path: &str, body: &str) -> Answer {
        self.call("PUT", path, Some(body))
    }

    pub fn delete(&self, path: &str) -> Answer {
        self.call("DELETE", path, None)
    }

    pub fn post(&self, path: &str, body: &str) -> Answer {
        self.call("POST", path, Some(body))
    }

    /// GET that must answer 200, as JSON.
    pub fn get_json(&self, path: &str) -> Value {
        let a = self.get(path);
        assert_eq!(a.status, 200, "GET {path}: {a:?}");
        a.json()
    }
}

/// Asserts an error answer: status and the `{"error","reason"}` body.
pub fn assert_error(a: &Answer, status: u16, error: &str, reason: &str) {
    assert_eq!(a.status, status, "{a:?}");
    let j = a.json();
    assert_eq!(j["error"], error, "{a:?}");
    assert_eq!(j["reason"], reason, "{a:?}");
}
