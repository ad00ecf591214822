//! AWS Signature Version 4, as botocore signs Lambda requests: parsing the Authorization
//! header, building the canonical request, and computing the signature. Used by the server
//! to verify requests and by the CLI to sign them. Pure computation, no I/O.

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The algorithm name in headers.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// What an `Authorization: AWS4-HMAC-SHA256 …` header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// The access key id.
    pub access_key_id: String,
    /// Scope date, `YYYYMMDD`.
    pub date: String,
    /// Scope region.
    pub region: String,
    /// Scope service.
    pub service: String,
    /// Lowercase names of the signed headers, in order.
    pub signed_headers: Vec<String>,
    /// Hex signature.
    pub signature: String,
}

/// Parses an Authorization header; `None` if it is not a well-formed SigV4 one.
pub fn parse_authorization(header: &str) -> Option<Authorization> {
    let rest = header.strip_prefix(ALGORITHM)?.trim_start();
    let mut credential = None;
    let mut signed = None;
    let mut signature = None;
    for part in rest.split(',') {
        let (key, value) = part.trim().split_once('=')?;
        match key {
            "Credential" => credential = Some(value),
            "SignedHeaders" => signed = Some(value),
            "Signature" => signature = Some(value),
            _ => {}
        }
    }
    let mut scope = credential?.split('/');
    let (Some(key), Some(date), Some(region), Some(service), Some("aws4_request"), None) = (
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
    ) else {
        return None;
    };
    Some(Authorization {
        access_key_id: key.to_owned(),
        date: date.to_owned(),
        region: region.to_owned(),
        service: service.to_owned(),
        signed_headers: signed?.split(';').map(str::to_owned).collect(),
        signature: signature?.to_owned(),
    })
}

/// Percent-encodes as SigV4 does: everything but `A-Za-z0-9-._~` (and `/` if `keep_slash`).
pub fn uri_encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// Decodes `%XX` escapes (and nothing else: `+` stays `+`, a `%` not followed by two hex
/// digits stays as it is); bytes that are not UTF-8 after decoding become U+FFFD.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).and_then(|b| hex_digit(*b)),
                bytes.get(i + 2).and_then(|b| hex_digit(*b)),
            ) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of one ASCII hex digit.
fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The canonical query string: pairs decoded, re-encoded, sorted.
pub fn canonical_query(raw_query: &str) -> String {
    let mut pairs: Vec<(String, String)> = raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&percent_decode(k), false),
                uri_encode(&percent_decode(v), false),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// A header value as canonicalised: trimmed, runs of spaces collapsed.
fn canonical_value(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// What is signed: the request as the signer saw it.
#[derive(Debug, Clone)]
pub struct SignedRequest<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// The path as sent (still percent-encoded).
    pub raw_path: &'a str,
    /// The query as sent, without `?`.
    pub raw_query: &'a str,
    /// Each signed header's (lowercase name, values joined by `,`), in signed order.
    pub headers: Vec<(String, String)>,
    /// Hex SHA-256 of the body (or the `x-amz-content-sha256` value).
    pub payload_hash: &'a str,
    /// `X-Amz-Date`, `YYYYMMDDTHHMMSSZ`.
    pub amz_date: &'a str,
}

impl SignedRequest<'_> {
    /// The canonical request (botocore's: the path encoded once more, `/` kept).
    pub fn canonical(&self) -> String {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        let headers: String = self
            .headers
            .iter()
            .map(|(n, v)| format!("{n}:{}\n", canonical_value(v)))
            .collect();
        format!(
            "{}\n{}\n{}\n{headers}\n{}\n{}",
            self.method,
            uri_encode(self.raw_path, true),
            canonical_query(self.raw_query),
            names.join(";"),
            self.payload_hash
        )
    }

    /// The hex signature with `secret` for `date/region/service`.
    pub fn signature(&self, secret: &str, date: &str, region: &str, service: &str) -> String {
        let scope = format!("{date}/{region}/{service}/aws4_request");
        let to_sign = format!(
            "{ALGORITHM}\n{}\n{scope}\n{}",
            self.amz_date,
            sha256_hex(self.canonical().as_bytes())
        );
        hex::encode(hmac(
            &signing_key(secret, date, region, service),
            to_sign.as_bytes(),
        ))
    }
}

/// The key a secret derives for one scope (`date/region/service/aws4_request`).
fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// Compares two strings in time independent of where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The format of `X-Amz-Date`.
pub const DATE_FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// How far a signature's date may be from the server's clock, either way, as AWS allows.
pub const MAX_SKEW_MINUTES: i64 = 15;

/// Whether `value` is a hex SHA-256 (64 hex digits), as a signed payload hash must be.
pub fn is_sha256_hex(value: &str) -> bool {
    value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit())
}

/// SHA-256 of a body that arrives in pieces.
#[derive(Debug, Clone, Default)]
pub struct PayloadHasher(Sha256);

impl PayloadHasher {
    /// A hasher that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the next piece of the body.
    pub fn update(&mut self, piece: &[u8]) {
        self.0.update(piece);
    }

    /// The hex SHA-256 of everything added.
    pub fn finish_hex(self) -> String {
        hex::encode(self.0.finalize())
    }
}

/// Why a request's signature was refused. The server turns each into AWS's wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// No `Authorization` header at all.
    #[error("no authorization header")]
    Missing,
    /// An `Authorization` header that is not a well-formed AWS4-HMAC-SHA256 one.
    #[error("malformed authorization header")]
    Malformed,
    /// Signed with an access key id the server does not have.
    #[error("unknown access key id {0:?}")]
    UnknownKey(String),
    /// The credential scope names another region.
    #[error("credential scoped to region {got:?}, not {expected:?}")]
    WrongRegion {
        /// The server's region.
        expected: String,
        /// The scope's region.
        got: String,
    },
    /// The credential scope names another service.
    #[error("credential scoped to service {got:?}, not {expected:?}")]
    WrongService {
        /// The service the server is.
        expected: String,
        /// The scope's service.
        got: String,
    },
    /// No `X-Amz-Date` header.
    #[error("no x-amz-date header")]
    MissingDate,
    /// An `X-Amz-Date` that is not `YYYYMMDDTHHMMSSZ`.
    #[error("x-amz-date {0:?} is not a sigv4 date")]
    BadDate(String),
    /// The credential scope's date is not the day of `X-Amz-Date`.
    #[error("scope date {scope} is not the day of x-amz-date {amz_date}")]
    ScopeDate {
        /// The scope's `YYYYMMDD`.
        scope: String,
        /// The `X-Amz-Date` value.
        amz_date: String,
    },
    /// Signed more than [`MAX_SKEW_MINUTES`] ago.
    #[error("signature expired: {signed} is before {earliest}")]
    Expired {
        /// The request's date.
        signed: String,
        /// The earliest date accepted.
        earliest: String,
        /// The server's clock.
        now: String,
    },
    /// Signed more than [`MAX_SKEW_MINUTES`] ahead of the server's clock.
    #[error("signature not yet current: {signed} is after {latest}")]
    NotYetCurrent {
        /// The request's date.
        signed: String,
        /// The latest date accepted.
        latest: String,
        /// The server's clock.
        now: String,
    },
    /// `host` is not among the signed headers.
    #[error("host is not a signed header")]
    HostNotSigned,
    /// A header named in `SignedHeaders` is not in the request.
    #[error("signed header {0:?} is missing")]
    SignedHeaderMissing(String),
    /// `x-amz-content-sha256` is not a hex SHA-256 (e.g. `UNSIGNED-PAYLOAD`).
    #[error("payload not signed: x-amz-content-sha256 is {0:?}")]
    PayloadNotSigned(String),
    /// The body does not hash to the `x-amz-content-sha256` the client signed.
    #[error("the body does not hash to x-amz-content-sha256")]
    PayloadMismatch,
    /// The signature is not the one the secret gives.
    #[error("signature mismatch")]
    SignatureMismatch,
}

/// A request's head as the verifier reads it.
pub struct RequestHead<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// The path as sent (still percent-encoded).
    pub raw_path: &'a str,
    /// The query as sent, without `?`.
    pub raw_query: &'a str,
    /// A header's values by lowercase name, joined by `,`; `None` if absent.
    pub header: &'a dyn Fn(&str) -> Option<String>,
}

/// What a server accepts signatures for: its one key, its region and its service.
#[derive(Debug, Clone, Copy)]
pub struct Verifier<'a> {
    /// The access key id clients sign with.
    pub access_key_id: &'a str,
    /// The secret that goes with it.
    pub secret_access_key: &'a str,
    /// The region credentials must be scoped to.
    pub region: &'a str,
    /// The service credentials must be scoped to.
    pub service: &'a str,
}

/// A request whose head passed every check; only its body can still refuse it.
#[derive(Debug, Clone)]
pub struct PendingBody {
    /// The `x-amz-content-sha256` the signature was already verified with, if the client
    /// sent one: then the body must hash to it.
    claimed: Option<String>,
    /// The canonical request up to (without) its payload hash line, when unclaimed.
    canonical_head: String,
    /// `X-Amz-Date`.
    amz_date: String,
    /// `date/region/service/aws4_request`.
    scope: String,
    /// The key the secret derives for that scope.
    key: Vec<u8>,
    /// The signature the client sent.
    signature: String,
}

impl Verifier<'_> {
    /// Checks everything a request's head can tell, at `now`: that it is signed with this
    /// key, for this region and service, within [`MAX_SKEW_MINUTES`] of `now`, with `host`
    /// signed and every signed header present, and — when the client sent
    /// `x-amz-content-sha256` — the whole signature. Nothing here needs the body.
    pub fn check_head(
        &self,
        head: &RequestHead<'_>,
        now: DateTime<Utc>,
    ) -> Result<PendingBody, VerifyError> {
        let header = head.header;
        let authorization = header("authorization").ok_or(VerifyError::Missing)?;
        let auth = parse_authorization(&authorization).ok_or(VerifyError::Malformed)?;
        if auth.access_key_id != self.access_key_id {
            return Err(VerifyError::UnknownKey(auth.access_key_id));
        }
        if auth.region != self.region {
            return Err(VerifyError::WrongRegion {
                expected: self.region.to_owned(),
                got: auth.region,
            });
        }
        if auth.service != self.service {
            return Err(VerifyError::WrongService {
                expected: self.service.to_owned(),
                got: auth.service,
            });
        }
        let amz_date = header("x-amz-date").ok_or(VerifyError::MissingDate)?;
        let signed_at = NaiveDateTime::parse_from_str(&amz_date, DATE_FORMAT)
            .map_err(|_| VerifyError::BadDate(amz_date.clone()))?
            .and_utc();
        if amz_date.get(..8) != Some(auth.date.as_str()) {
            return Err(VerifyError::ScopeDate {
                scope: auth.date,
                amz_date,
            });
        }
        let skew = Duration::minutes(MAX_SKEW_MINUTES);
        if signed_at < now - skew {
            return Err(VerifyError::Expired {
                signed: amz_date,
                earliest: (now - skew).format(DATE_FORMAT).to_string(),
                now: now.format(DATE_FORMAT).to_string(),
            });
        }
        if signed_at > now + skew {
            return Err(VerifyError::NotYetCurrent {
                signed: amz_date,
                latest: (now + skew).format(DATE_FORMAT).to_string(),
                now: now.format(DATE_FORMAT).to_string(),
            });
        }
        if !auth.signed_headers.iter().any(|h| h == "host") {
            return Err(VerifyError::HostNotSigned);
        }
        let mut headers = Vec::with_capacity(auth.signed_headers.len());
        for name in auth.signed_headers {
            let value =
                header(&name).ok_or_else(|| VerifyError::SignedHeaderMissing(name.clone()))?;
            headers.push((name, value));
        }
        let claimed = header("x-amz-content-sha256");
        if let Some(claimed) = &claimed {
            if !is_sha256_hex(claimed) {
                return Err(VerifyError::PayloadNotSigned(claimed.clone()));
            }
        }
        let request = SignedRequest {
            method: head.method,
            raw_path: head.raw_path,
            raw_query: head.raw_query,
            headers,
            payload_hash: "",
            amz_date: &amz_date,
        };
        let canonical = request.canonical();
        let pending = PendingBody {
            canonical_head: canonical,
            scope: format!(
                "{}/{}/{}/aws4_request",
                auth.date, self.region, self.service
            ),
            key: signing_key(
                self.secret_access_key,
                &auth.date,
                self.region,
                self.service,
            ),
            amz_date,
            signature: auth.signature,
            claimed: None,
        };
        match claimed {
            Some(claimed) => {
                pending.check_signature(&claimed)?;
                Ok(PendingBody {
                    claimed: Some(claimed),
                    ..pending
                })
            }
            None => Ok(pending),
        }
    }
}

impl PendingBody {
    /// The payload hash the client claimed (and the signature was verified with), if any.
    pub fn claimed_hash(&self) -> Option<&str> {
        self.claimed.as_deref()
    }

    /// Finishes the check with the hex SHA-256 of the body that arrived.
    pub fn finish(self, body_sha256_hex: &str) -> Result<(), VerifyError> {
        match &self.claimed {
            Some(claimed) if claimed.eq_ignore_ascii_case(body_sha256_hex) => Ok(()),
            Some(_) => Err(VerifyError::PayloadMismatch),
            None => self.check_signature(body_sha256_hex),
        }
    }

    /// Compares the client's signature with the one for this payload hash.
    fn check_signature(&self, payload_hash: &str) -> Result<(), VerifyError> {
        // `canonical_head` ends with the (empty) payload hash line.
        let canonical = format!("{}{payload_hash}", self.canonical_head);
        let to_sign = format!(
            "{ALGORITHM}\n{}\n{}\n{}",
            self.amz_date,
            self.scope,
            sha256_hex(canonical.as_bytes())
        );
        let expected = hex::encode(hmac(&self.key, to_sign.as_bytes()));
        if constant_time_eq(&expected, &self.signature) {
            Ok(())
        } else {
            Err(VerifyError::SignatureMismatch)
        }
    }
}

/// A client's signing identity: key, secret and scope.
#[derive(Debug, Clone, Copy)]
pub struct Signer<'a> {
    /// The access key id.
    pub access_key_id: &'a str,
    /// The secret.
    pub secret_access_key: &'a str,
    /// The region to scope to.
    pub region: &'a str,
    /// The service to scope to.
    pub service: &'a str,
}

impl Signer<'_> {
    /// The headers that sign a request at `now`: `host`, `x-amz-content-sha256` (which
    /// must be the hex SHA-256 of the body), `x-amz-date` and `authorization`, all signed.
    pub fn sign(
        &self,
        method: &str,
        raw_path: &str,
        raw_query: &str,
        host: &str,
        payload_hash: &str,
        now: DateTime<Utc>,
    ) -> [(&'static str, String); 4] {
        let amz_date = now.format(DATE_FORMAT).to_string();
        let date = now.format("%Y%m%d").to_string();
        let signature = SignedRequest {
            method,
            raw_path,
            raw_query,
            headers: vec![
                ("host".to_owned(), host.to_owned()),
                ("x-amz-content-sha256".to_owned(), payload_hash.to_owned()),
                ("x-amz-date".to_owned(), amz_date.clone()),
            ],
            payload_hash,
            amz_date: &amz_date,
        }
        .signature(self.secret_access_key, &date, self.region, self.service);
        let authorization = format!(
            "{ALGORITHM} Credential={}/{date}/{}/{}/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={signature}",
            self.access_key_id, self.region, self.service
        );
        [
            ("host", host.to_owned()),
            ("x-amz-content-sha256", payload_hash.to_owned()),
            ("x-amz-date", amz_date),
            ("authorization", authorization),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's documented example (get-vanilla from the SigV4 test suite).
    #[test]
    fn matches_the_aws_test_suite_vanilla_get() {
        let request = SignedRequest {
            method: "GET",
            raw_path: "/",
            raw_query: "",
            headers: vec![
                ("host".into(), "example.amazonaws.com".into()),
                ("x-amz-date".into(), "20150830T123600Z".into()),
            ],
            payload_hash: &sha256_hex(b""),
            amz_date: "20150830T123600Z",
        };
        let signature = suite_signature(&request);
        assert_eq!(
            signature,
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    #[test]
    fn parses_botocores_header_and_encodes_arns_twice() {
        let auth = parse_authorization(
            "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/lambda/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=abc",
        )
        .expect("parses");
        assert_eq!(auth.access_key_id, "AKID");
        assert_eq!(auth.signed_headers, ["content-type", "host", "x-amz-date"]);
        assert_eq!(
            uri_encode("/2015-03-31/functions/arn%3Aaws%3Alambda/invocations", true),
            "/2015-03-31/functions/arn%253Aaws%253Alambda/invocations"
        );
        assert_eq!(
            canonical_query("Qualifier=%24LATEST&A=b c"),
            "A=b%20c&Qualifier=%24LATEST"
        );
        assert!(parse_authorization("Bearer x").is_none());
        assert!(constant_time_eq("abc", "abc") && !constant_time_eq("abc", "abd"));
    }

    /// `request`'s signature with the AWS test suite's secret, date, region and service.
    fn suite_signature(request: &SignedRequest) -> String {
        request.signature(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20150830",
            "us-east-1",
            "service",
        )
    }

    /// AWS's test suite: get-vanilla-query-order-key-case (parameters sorted by key, then
    /// value, after encoding).
    #[test]
    fn matches_the_aws_test_suite_query_order() {
        let request = SignedRequest {
            method: "GET",
            raw_path: "/",
            raw_query: "Param2=value2&Param1=value1",
            headers: vec![
                ("host".into(), "example.amazonaws.com".into()),
                ("x-amz-date".into(), "20150830T123600Z".into()),
            ],
            payload_hash: &sha256_hex(b""),
            amz_date: "20150830T123600Z",
        };
        assert_eq!(
            suite_signature(&request),
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
        );
    }

    /// AWS's test suite: post-x-www-form-urlencoded (a body, its hash signed).
    #[test]
    fn matches_the_aws_test_suite_post_with_a_body() {
        let request = SignedRequest {
            method: "POST",
            raw_path: "/",
            raw_query: "",
            headers: vec![
                (
                    "content-type".into(),
                    "application/x-www-form-urlencoded".into(),
                ),
                ("host".into(), "example.amazonaws.com".into()),
                ("x-amz-date".into(), "20150830T123600Z".into()),
            ],
            payload_hash: &sha256_hex(b"Param1=value1"),
            amz_date: "20150830T123600Z",
        };
        assert_eq!(
            suite_signature(&request),
            "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"
        );
    }

    const KEY: &str = "AKIDEXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn verifier(region: &str) -> Verifier<'_> {
        Verifier {
            access_key_id: KEY,
            secret_access_key: SECRET,
            region,
            service: "lambda",
        }
    }

    fn signer(region: &str) -> Signer<'_> {
        Signer {
            access_key_id: KEY,
            secret_access_key: SECRET,
            region,
            service: "lambda",
        }
    }

    fn at(text: &str) -> DateTime<Utc> {
        NaiveDateTime::parse_from_str(text, DATE_FORMAT)
            .expect("a test date")
            .and_utc()
    }

    /// Runs the verifier over `headers` (name, value) as a server would see them.
    fn check(
        method: &str,
        path: &str,
        query: &str,
        headers: &[(&str, String)],
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), VerifyError> {
        let lookup = |name: &str| {
            let values: Vec<&str> = headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
                .collect();
            (!values.is_empty()).then(|| values.join(","))
        };
        let head = RequestHead {
            method,
            raw_path: path,
            raw_query: query,
            header: &lookup,
        };
        verifier("us-east-1")
            .check_head(&head, now)?
            .finish(&sha256_hex(body))
    }

    fn signed(
        method: &str,
        path: &str,
        query: &str,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Vec<(&'static str, String)> {
        signer("us-east-1")
            .sign(
                method,
                path,
                query,
                "127.0.0.1:9300",
                &sha256_hex(body),
                now,
            )
            .to_vec()
    }

    #[test]
    fn the_head_is_refused_before_the_body_when_it_cannot_be_authentic() {
        let now = at("20260101T120000Z");
        let path = "/2015-03-31/functions/f/invocations";
        let good = signed("POST", path, "", b"{}", now);
        assert_eq!(check("POST", path, "", &good, b"{}", now), Ok(()));
        assert_eq!(
            check("POST", path, "", &good, b"{\"a\":1}", now),
            Err(VerifyError::PayloadMismatch),
            "a tampered body under the original x-amz-content-sha256"
        );
        let mut unsigned = good.clone();
        unsigned[1].1 = "UNSIGNED-PAYLOAD".into();
        assert_eq!(
            check("POST", path, "", &unsigned, b"{}", now),
            Err(VerifyError::PayloadNotSigned("UNSIGNED-PAYLOAD".into()))
        );
        let sixteen = chrono::Duration::minutes(16);
        assert!(matches!(
            check("POST", path, "", &good, b"{}", now + sixteen),
            Err(VerifyError::Expired { .. })
        ));
        assert!(matches!(
            check("POST", path, "", &good, b"{}", now - sixteen),
            Err(VerifyError::NotYetCurrent { ref latest, .. }) if latest == "20260101T115900Z"
        ));
        let elsewhere = signer("eu-west-1")
            .sign("GET", path, "", "h", &sha256_hex(b""), now)
            .to_vec();
        assert!(matches!(
            check("GET", path, "", &elsewhere, b"", now),
            Err(VerifyError::WrongRegion { .. })
        ));
        let s3 = Signer {
            service: "s3",
            ..signer("us-east-1")
        }
        .sign("GET", path, "", "h", &sha256_hex(b""), now)
        .to_vec();
        assert!(matches!(
            check("GET", path, "", &s3, b"", now),
            Err(VerifyError::WrongService { .. })
        ));
        assert_eq!(
            check("GET", path, "", &[], b"", now),
            Err(VerifyError::Missing)
        );
    }

    #[test]
    fn an_unclaimed_payload_is_checked_against_the_body_that_arrived() {
        // botocore sends no x-amz-content-sha256 for Lambda: the body's hash is only in
        // the canonical request.
        let now = at("20260101T120000Z");
        let path = "/2015-03-31/functions";
        let amz_date = now.format(DATE_FORMAT).to_string();
        let body = b"{\"FunctionName\":\"f\"}";
        let signature = SignedRequest {
            method: "POST",
            raw_path: path,
            raw_query: "",
            headers: vec![
                ("host".into(), "h".into()),
                ("x-amz-date".into(), amz_date.clone()),
            ],
            payload_hash: &sha256_hex(body),
            amz_date: &amz_date,
        }
        .signature(SECRET, "20260101", "us-east-1", "lambda");
        let headers = [
            ("host", "h".to_owned()),
            ("x-amz-date", amz_date),
            ("authorization", format!("{ALGORITHM} Credential={KEY}/20260101/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature={signature}")),
        ];
        assert_eq!(check("POST", path, "", &headers, body, now), Ok(()));
        assert_eq!(
            check("POST", path, "", &headers, b"{\"FunctionName\":\"g\"}", now),
            Err(VerifyError::SignatureMismatch)
        );
    }

    #[test]
    fn percent_decoding_never_splits_a_character() {
        assert_eq!(percent_decode("%a\u{e9}"), "%a\u{e9}");
        assert_eq!(percent_decode("%+1"), "%+1");
        assert_eq!(percent_decode("%41%4a%"), "AJ%");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Text of any characters, weighted towards the ones SigV4 treats specially.
        fn text() -> impl Strategy<Value = String> {
            proptest::collection::vec(
                prop_oneof![
                    4 => proptest::char::range('a', 'z'),
                    2 => prop::sample::select(vec!['%', '+', '=', '&', '/', ' ', '~', '*', ':', '$', '?', '#']),
                    1 => any::<char>(),
                ],
                0..24,
            )
            .prop_map(|chars| chars.into_iter().collect())
        }

        /// A query string as a client would send it: each key and value encoded.
        fn query() -> impl Strategy<Value = Vec<(String, String)>> {
            proptest::collection::vec((text(), text()), 0..6)
        }

        fn encode_query(pairs: &[(String, String)]) -> String {
            pairs
                .iter()
                .map(|(k, v)| format!("{}={}", uri_encode(k, false), uri_encode(v, false)))
                .collect::<Vec<_>>()
                .join("&")
        }

        proptest! {
            #[test]
            fn uri_encoding_round_trips(text in text()) {
                prop_assert_eq!(percent_decode(&uri_encode(&text, false)), text.clone());
                prop_assert_eq!(percent_decode(&uri_encode(&text, true)), text.clone());
                let encoded = uri_encode(&text, false);
                prop_assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)));
            }

            #[test]
            fn percent_decoding_any_text_does_not_panic(text in any::<String>()) {
                let _ = percent_decode(&text);
                let _ = canonical_query(&text);
            }

            #[test]
            fn the_canonical_query_ignores_the_order_of_parameters(
                pairs in query(),
                seed in any::<u64>(),
            ) {
                let mut shuffled = pairs.clone();
                // A deterministic shuffle from the seed.
                let mut state = seed | 1;
                for i in (1..shuffled.len()).rev() {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    shuffled.swap(i, (state % (i as u64 + 1)) as usize);
                }
                let canonical = canonical_query(&encode_query(&pairs));
                prop_assert_eq!(&canonical, &canonical_query(&encode_query(&shuffled)));
                // Canonical is a fixed point: canonicalising it again changes nothing.
                prop_assert_eq!(&canonical, &canonical_query(&canonical));
            }

            #[test]
            fn what_our_signer_signs_our_verifier_accepts(
                method in prop::sample::select(vec!["GET", "POST", "PUT", "DELETE"]),
                segments in proptest::collection::vec(text(), 1..4),
                pairs in query(),
                body in proptest::collection::vec(any::<u8>(), 0..64),
                offset_s in -900i64..=900,
                flip in any::<prop::sample::Index>(),
            ) {
                let path = format!("/{}", segments.iter().map(|s| uri_encode(s, false)).collect::<Vec<_>>().join("/"));
                let query = encode_query(&pairs);
                let signed_at = at("20260101T120000Z");
                let now = signed_at + chrono::Duration::seconds(offset_s);
                let headers = signed(method, &path, &query, &body, signed_at);
                prop_assert_eq!(check(method, &path, &query, &headers, &body, now), Ok(()));
                // Any change to the body is caught.
                let mut tampered = body.clone();
                if tampered.is_empty() {
                    tampered.push(0);
                } else {
                    let i = flip.index(tampered.len());
                    tampered[i] ^= 1;
                }
                prop_assert_eq!(
                    check(method, &path, &query, &headers, &tampered, now),
                    Err(VerifyError::PayloadMismatch)
                );
                // So is a change to the path or the query.
                let other_path = format!("{path}x");
                prop_assert_eq!(
                    check(method, &other_path, &query, &headers, &body, now),
                    Err(VerifyError::SignatureMismatch)
                );
                let other_query = format!("{query}&zz=1");
                prop_assert_eq!(
                    check(method, &path, &other_query, &headers, &body, now),
                    Err(VerifyError::SignatureMismatch)
                );
            }

            #[test]
            fn header_values_are_canonicalised_as_their_words(
                words in proptest::collection::vec("[a-zA-Z0-9]{1,6}", 1..5),
                pad in proptest::collection::vec(" {1,3}", 5),
            ) {
                let tight = words.join(" ");
                let loose = format!("{}{}{}", pad[0], words.join(&pad[1]), pad[2]);
                prop_assert_eq!(canonical_value(&loose), tight);
            }
        }
    }
}
