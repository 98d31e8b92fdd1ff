//! The HTTP transport: one thin adapter over ureq. Everything it reports names the URL without
//! credentials; the token travels only in the Authorization header.
use std::time::Duration;

use serde_json::Value;
use ureq::tls::{Certificate, RootCerts, TlsConfig};

use crate::bail;
use crate::engine::excerpt;
use crate::error::{Error, Result};
use crate::settings::{redact_url, Settings};

pub struct Http {
    agent: ureq::Agent,
    headers: Vec<(String, String)>,
    debug_level: u64,
}

/// Sent as `X-Tether-Client-Version`.
pub const CLIENT_VERSION: &str = concat!("tether-sqlite/", env!("CARGO_PKG_VERSION"));

fn roots(ca_file: Option<&str>) -> Result<RootCerts> {
    let Some(path) = ca_file else {
        return Ok(RootCerts::WebPki);
    };
    let pem = std::fs::read(path)
        .map_err(|e| Error::new(format!("ca_file {path:?} cannot be read: {e}")))?;
    let mut certs: Vec<Certificate<'static>> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .map(|c| Certificate::from_der(c.as_ref()).to_owned())
        .collect();
    let mut added = 0;
    for item in ureq::tls::parse_pem(&pem) {
        if let Ok(ureq::tls::PemItem::Certificate(cert)) = item {
            certs.push(cert);
            added += 1;
        }
    }
    if added == 0 {
        bail!("ca_file {path:?} holds no PEM certificate");
    }
    Ok(RootCerts::new_with_certs(&certs))
}

impl Http {
    pub fn new(settings: &Settings) -> Result<Http> {
        let timeout = Duration::from_millis(settings.number("timeout_ms").max(1));
        let tls = TlsConfig::builder()
            .root_certs(roots(settings.get("ca_file"))?)
            .build();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .tls_config(tls)
            .user_agent(CLIENT_VERSION)
            .build()
            .into();
        let mut headers = vec![
            ("Content-Type".to_string(), "application/json".to_string()),
            ("Accept".to_string(), "application/json".to_string()),
            (
                "X-Tether-Client-Version".to_string(),
                CLIENT_VERSION.to_string(),
            ),
        ];
        if let Some(Value::Object(extra)) = settings
            .get("headers")
            .and_then(|h| serde_json::from_str(h).ok())
        {
            for (name, value) in extra {
                headers.push((name, value.as_str().unwrap_or_default().to_string()));
            }
        }
        if let Some(token) = settings.get("auth_token") {
            headers.push(("Authorization".to_string(), format!("Bearer {token}")));
        }
        Ok(Http {
            agent,
            headers,
            debug_level: settings.number("debug_level"),
        })
    }

    /// POSTs `body` and returns the answer's text; any status ≥ 400, or no answer at all, is an
    /// error naming the URL and the status or cause.
    pub fn post(&self, url: &str, body: &str) -> Result<String> {
        let shown = redact_url(url);
        let started = std::time::Instant::now();
        let answer = self.exchange(url, &shown, body);
        if self.debug_level >= 2 {
            let ms = started.elapsed().as_secs_f64() * 1e3;
            match &answer {
                Ok(text) => eprintln!(
                    "[TETHER] POST {shown}: {} bytes out, {} bytes back, {ms:.0} ms",
                    body.len(),
                    text.len()
                ),
                Err(e) => eprintln!("[TETHER] POST {shown}: {e} ({ms:.0} ms)"),
            }
        }
        if self.debug_level >= 3 {
            eprintln!("[TETHER]   request: {}", excerpt(body));
            if let Ok(text) = &answer {
                eprintln!("[TETHER]   answer: {}", excerpt(text));
            }
        }
        answer
    }

    fn exchange(&self, url: &str, shown: &str, body: &str) -> Result<String> {
        let mut request = self.agent.post(url);
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let mut response = request
            .send(body)
            .map_err(|e| Error::new(format!("POST {shown} failed: {}", describe(&e))))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_string()
            .map_err(|e| {
                Error::new(format!(
                    "POST {shown}: HTTP {status}, reading the answer failed: {}",
                    describe(&e)
                ))
            })?;
        if status >= 400 {
            bail!("POST {shown} answered HTTP {status}: {}", excerpt(&text));
        }
        Ok(text)
    }
}

fn describe(error: &ureq::Error) -> String {
    match error {
        ureq::Error::Timeout(_) => "timed out".to_string(),
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection refused".to_string()
        }
        other => other.to_string(),
    }
}
