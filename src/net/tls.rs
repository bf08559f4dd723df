//! TLS (amqps) for client sockets: the server configuration built once at
//! start, the per-socket state (`TlsState`, a sans-I/O rustls
//! `ServerConnection` driven by `Socket::fill` and `Socket::flush` on the
//! shard's own thread), and the identity of a verified client certificate
//! (`PeerCert`), formatted as RabbitMQ formats it.
//!
//! Plain sockets never touch this module: `Socket::tls` is `None` and costs
//! one branch per fill and flush.

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};
use std::io;
use std::path::Path;
use std::sync::Arc;
use x509_parser::der_parser::asn1_rs::Tag;
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

/// Where the TLS listener's certificates come from.
pub struct TlsFiles<'a> {
    /// The server's certificate chain, PEM (leaf first).
    pub cert: &'a Path,
    /// Its private key, PEM: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub key: &'a Path,
    /// CAs that sign client certificates, PEM. When given, clients are asked
    /// for a certificate and the one they send is verified.
    pub ca: Option<&'a Path>,
    /// With `ca`: a client without a certificate is refused.
    pub fail_if_no_peer_cert: bool,
}

/// Builds the server configuration (TLS 1.2 and 1.3, ring provider). Fails
/// with a message naming the file when something cannot be read or parsed.
pub fn server_config(files: &TlsFiles) -> io::Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = read_certs(files.cert)?;
    let key = read_key(files.key)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| invalid(format!("TLS protocol versions: {}", e)))?;
    let builder = match files.ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in read_certs(ca)? {
                roots.add(c).map_err(|e| {
                    invalid(format!("bad CA certificate in {}: {}", ca.display(), e))
                })?;
            }
            let mut v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            if !files.fail_if_no_peer_cert {
                v = v.allow_unauthenticated();
            }
            let v = v
                .build()
                .map_err(|e| invalid(format!("client verifier from {}: {}", ca.display(), e)))?;
            builder.with_client_cert_verifier(v)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(certs, key).map_err(|e| {
        invalid(format!(
            "TLS certificate {} with key {}: {}",
            files.cert.display(),
            files.key.display(),
            e
        ))
    })?;
    Ok(Arc::new(config))
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn open(path: &Path) -> io::Result<io::BufReader<std::fs::File>> {
    std::fs::File::open(path)
        .map(io::BufReader::new)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot read {}: {}", path.display(), e)))
}

fn read_certs(path: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    let certs = rustls_pemfile::certs(&mut open(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("bad PEM in {}: {}", path.display(), e)))?;
    if certs.is_empty() {
        return Err(invalid(format!("no certificate in {}", path.display())));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> io::Result<PrivateKeyDer<'static>> {
    rustls_pemfile::private_key(&mut open(path)?)
        .map_err(|e| invalid(format!("bad PEM in {}: {}", path.display(), e)))?
        .ok_or_else(|| invalid(format!("no private key in {}", path.display())))
}

/// One socket's TLS session. Boxed in `Socket` (a `ServerConnection` is
/// about a kilobyte) so that plain sockets stay small.
pub struct TlsState {
    pub(super) conn: ServerConnection,
    /// The handshake has completed (and `peer` was looked at).
    handshake_done: bool,
    peer: Option<PeerCert>,
}

impl TlsState {
    pub fn new(config: Arc<ServerConfig>) -> io::Result<TlsState> {
        let conn = ServerConnection::new(config).map_err(io::Error::other)?;
        Ok(TlsState {
            conn,
            handshake_done: false,
            peer: None,
        })
    }

    /// Called after new packets were processed: once the handshake is over,
    /// the verified client certificate (if any) is parsed, once.
    pub(super) fn after_packets(&mut self) {
        if self.handshake_done || self.conn.is_handshaking() {
            return;
        }
        self.handshake_done = true;
        self.peer = self
            .conn
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|der| PeerCert::from_der(der).ok());
    }

    /// True once the handshake has completed.
    pub fn established(&self) -> bool {
        self.handshake_done
    }

    /// The client's verified certificate, after the handshake.
    pub fn peer_cert(&self) -> Option<&PeerCert> {
        self.peer.as_ref()
    }

    /// The negotiated protocol as RabbitMQ names it (`ssl_protocol`):
    /// `tlsv1.2`, `tlsv1.3`.
    pub fn protocol(&self) -> Option<&'static str> {
        match self.conn.protocol_version()? {
            rustls::ProtocolVersion::TLSv1_2 => Some("tlsv1.2"),
            rustls::ProtocolVersion::TLSv1_3 => Some("tlsv1.3"),
            _ => Some("unknown"),
        }
    }

    /// The negotiated cipher suite, IANA name (e.g. `TLS13_AES_128_GCM_SHA256`).
    pub fn cipher(&self) -> Option<&'static str> {
        self.conn
            .negotiated_cipher_suite()
            .and_then(|s| s.suite().as_str())
    }
}

/// What a verified client certificate says about its holder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerCert {
    /// The subject as an RFC 4514 string, formatted as RabbitMQ's
    /// `rabbit_cert_info:subject/1` does (`format_rdn_sequence`): RDNs in
    /// reverse order joined by `,`, multi-valued RDNs joined by `+`, short
    /// attribute names (`CN`, `O`, `OU`, …, dotted OIDs for unknown ones),
    /// RabbitMQ's escaping.
    pub subject: String,
    /// The subject's common names joined by `,` (RabbitMQ's
    /// `peer_cert_auth_name(common_name, _)`); `None` if it has none.
    pub common_name: Option<String>,
}

impl PeerCert {
    pub fn from_der(der: &[u8]) -> Result<PeerCert, String> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
        let subject = cert.subject();
        Ok(PeerCert {
            subject: format_rdn_sequence(subject),
            common_name: common_names(subject),
        })
    }
}

const OID_CN: &str = "2.5.4.3";

/// RabbitMQ's `format_rdn` short names (rabbit_cert_info.erl).
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.4" => "SN",
        "2.5.4.42" => "GIVENNAME",
        "2.5.4.43" => "INITIALS",
        "2.5.4.44" => "GENERATIONQUALIFIER",
        OID_CN => "CN",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "TITLE",
        "2.5.4.6" => "C",
        "2.5.4.5" => "SERIALNUMBER",
        "2.5.4.65" => "PSEUDONYM",
        "0.9.2342.19200300.100.1.25" => "DC",
        "1.2.840.113549.1.9.1" => "EMAILADDRESS",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// `format_rdn_sequence`: the last RDN of the certificate first.
fn format_rdn_sequence(name: &X509Name) -> String {
    let rdns: Vec<String> = name
        .iter()
        .map(|rdn| {
            rdn.iter()
                .map(|atv| {
                    let oid = atv.attr_type().to_id_string();
                    let value = escape_rdn_value(value_bytes(atv).as_bytes());
                    match short_name(&oid) {
                        Some(n) => format!("{}={}", n, value),
                        None => format!("{}={}", oid, value),
                    }
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    let mut rdns = rdns;
    rdns.reverse();
    rdns.join(",")
}

fn common_names(name: &X509Name) -> Option<String> {
    let cns: Vec<String> = name
        .iter()
        .flat_map(|rdn| rdn.iter())
        .filter(|atv| atv.attr_type().to_id_string() == OID_CN)
        .map(value_bytes)
        .collect();
    (!cns.is_empty()).then(|| cns.join(","))
}

/// A directory string's value as UTF-8 (`format_asn1_value`): UTF8String,
/// PrintableString, IA5String as they are; BMPString (UCS-2),
/// UniversalString (UCS-4) and TeletexString (as ISO-8859-1) converted.
fn value_bytes(atv: &AttributeTypeAndValue) -> String {
    if let Ok(s) = atv.as_str() {
        return s.to_string();
    }
    let data = atv.as_slice();
    match atv.attr_value().tag() {
        Tag::BmpString => char::decode_utf16(
            data.chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]])),
        )
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect(),
        Tag::UniversalString => data
            .chunks_exact(4)
            .map(|c| {
                char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                    .unwrap_or(char::REPLACEMENT_CHARACTER)
            })
            .collect(),
        Tag::TeletexString => data.iter().map(|&b| b as char).collect(),
        _ => String::from_utf8_lossy(data).into_owned(),
    }
}

/// RabbitMQ's `escape_rdn_value` (RFC 4514, over the UTF-8 bytes): a
/// leading space or `#` and a trailing space get a backslash, so do
/// `" + , ; < > \`; bytes below 32 and from 126 up (so every byte of a
/// non-ASCII character) become `\XX`.
fn escape_rdn_value(v: &[u8]) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, &c) in v.iter().enumerate() {
        let first = i == 0;
        let last = i + 1 == v.len();
        match c {
            b' ' | b'#' if first => {
                out.push('\\');
                out.push(c as char);
            }
            b' ' if last => out.push_str("\\ "),
            b'"' | b'+' | b',' | b';' | b'<' | b'>' | b'\\' => {
                out.push('\\');
                out.push(c as char);
            }
            c if !(32..126).contains(&c) => out.push_str(&format!("\\{:02X}", c)),
            c => out.push(c as char),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, DnValue, KeyPair};

    fn cert_with(dn: DistinguishedName) -> PeerCert {
        let mut params = CertificateParams::new(vec!["client".to_string()]).unwrap();
        params.distinguished_name = dn;
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        PeerCert::from_der(cert.der()).unwrap()
    }

    #[test]
    fn subject_is_reversed_with_short_names() {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CountryName, "SE");
        dn.push(DnType::OrganizationName, "Warren Corp");
        dn.push(DnType::OrganizationalUnitName, "Ops");
        dn.push(DnType::CommonName, "guest");
        let p = cert_with(dn);
        assert_eq!(p.subject, "CN=guest,OU=Ops,O=Warren Corp,C=SE");
        assert_eq!(p.common_name.as_deref(), Some("guest"));
    }

    #[test]
    fn unknown_attributes_are_dotted_oids() {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CustomDnType(vec![1, 2, 3, 4]), "x");
        dn.push(DnType::CommonName, "a");
        let p = cert_with(dn);
        assert_eq!(p.subject, "CN=a,1.2.3.4=x");
    }

    #[test]
    fn values_are_escaped_like_rabbitmq() {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, " lead, \"quoted\"+;<x>\\ ");
        dn.push(
            DnType::CommonName,
            DnValue::Utf8String("#café~".to_string()),
        );
        let p = cert_with(dn);
        assert_eq!(
            p.subject,
            "CN=\\#caf\\C3\\A9\\7E,O=\\ lead\\, \\\"quoted\\\"\\+\\;\\<x\\>\\\\\\ "
        );
        // The login name is the value itself, unescaped.
        assert_eq!(p.common_name.as_deref(), Some("#café~"));
    }

    #[test]
    fn other_string_types_become_utf8() {
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            DnValue::BmpString("λx".try_into().unwrap()),
        );
        dn.push(
            DnType::OrganizationName,
            DnValue::UniversalString("Org".try_into().unwrap()),
        );
        let p = cert_with(dn);
        assert_eq!(p.subject, "O=Org,CN=\\CE\\BBx");
        assert_eq!(p.common_name.as_deref(), Some("λx"));
    }

    #[test]
    fn no_common_name() {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "O1");
        let p = cert_with(dn);
        assert_eq!(p.subject, "O=O1");
        assert_eq!(p.common_name, None);
    }

    #[test]
    fn escape_edge_cases() {
        assert_eq!(escape_rdn_value(b" "), "\\ ");
        assert_eq!(escape_rdn_value(b""), "");
        assert_eq!(escape_rdn_value(b"a=b"), "a=b");
        assert_eq!(escape_rdn_value(b"a#"), "a#");
        assert_eq!(escape_rdn_value(b"\x01"), "\\01");
    }

    #[test]
    fn unreadable_files_are_clear_errors() {
        let e = server_config(&TlsFiles {
            cert: Path::new("/nonexistent/cert.pem"),
            key: Path::new("/nonexistent/key.pem"),
            ca: None,
            fail_if_no_peer_cert: false,
        })
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/cert.pem"), "{}", e);
    }
}
