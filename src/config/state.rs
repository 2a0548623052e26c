//! The host config's `[state]` table: where the daemon's state lives
//! (DESIGN D11). Absent, it is the embedded SQLite file
//! (`daemon.state`); with `url`, a PostgreSQL database shared by a fleet of
//! drill hosts.
//!
//! ```toml
//! [state]
//! url = "postgres://glassdrill@db.internal.example:5432/glassdrill"
//! password = "file:/etc/glassdrill/db-password"   # by reference, never in the URL
//! tls = "verify-full"              # disable | prefer | require | verify-ca | verify-full
//! tls_ca = "/etc/glassdrill/db-ca.pem"
//! host = "drillhost-a"             # this host's name in the fleet (default: its hostname)
//! fleet = "contoso-break-glass"    # the fleet's name: its evidence log's origin
//! lease = "2m"                     # a claimed drill's lease, renewed while it runs
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{Problem, Severity, Source, parse_duration, secret_ref};
use crate::secret::SecretRef;

#[derive(Deserialize, Default)]
pub(super) struct RawState {
    url: Option<Spanned<String>>,
    password: Option<Spanned<String>>,
    tls: Option<Spanned<String>>,
    tls_ca: Option<String>,
    host: Option<Spanned<String>>,
    fleet: Option<Spanned<String>>,
    lease: Option<Spanned<String>>,
}

/// How the connection to PostgreSQL is secured (libpq's `sslmode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgTls {
    /// No TLS (loopback only).
    Disable,
    /// TLS if the server offers it, unverified.
    Prefer,
    /// TLS, the certificate not verified.
    Require,
    /// TLS, the certificate verified against `tls_ca`.
    VerifyCa,
    /// TLS, the certificate and the host name verified.
    VerifyFull,
}

impl PgTls {
    /// The modes, for messages.
    pub const NAMES: &'static str = "disable, prefer, require, verify-ca, verify-full";

    /// The mode named `s` (libpq's names).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => return None,
        })
    }

    /// libpq's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

/// A PostgreSQL state database.
#[derive(Debug, Clone)]
pub struct PostgresConfig {
    /// `postgres://user@host:port/db`, without the password.
    pub url: String,
    /// The password, by reference.
    pub password: Option<SecretRef>,
    /// TLS mode.
    pub tls: PgTls,
    /// The CA that signed the server's certificate.
    pub tls_ca: Option<PathBuf>,
}

/// `[state]`.
#[derive(Debug, Clone)]
pub struct StateConfig {
    /// PostgreSQL (a fleet); `None`: the SQLite file `daemon.state`.
    pub postgres: Option<PostgresConfig>,
    /// This host's name in the fleet.
    pub host: String,
    /// The fleet's name (its evidence log's origin).
    pub fleet: String,
    /// How long a claimed drill's lease lasts without renewal.
    pub lease: Duration,
}

/// The machine's host name.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            postgres: None,
            host: hostname(),
            fleet: "glassdrill".into(),
            lease: Duration::from_secs(120),
        }
    }
}

/// A fleet database's URL, as `field` gives it: `postgres://USER@HOST:PORT/
/// DATABASE`, without a password (that is `password_field`, by reference)
/// or query parameters. The error never echoes the text (it may hold a
/// password).
pub fn database_url(text: &str, field: &str, password_field: &str) -> Result<url::Url, String> {
    let u = url::Url::parse(text)
        .ok()
        .filter(|u| matches!(u.scheme(), "postgres" | "postgresql") && u.host_str().is_some())
        .ok_or_else(|| {
            format!("{field}: write it as postgres://USER@HOST:PORT/DATABASE (SQLite needs no url: it is daemon.state)")
        })?;
    if u.password().is_some() {
        return Err(format!(
            "{field} holds a password: remove it from the URL and set {password_field} = \"file:…\" (or \"env:…\")"
        ));
    }
    if u.query().is_some() {
        return Err(format!(
            "{field}: no query parameters; TLS is set with tls and tls_ca"
        ));
    }
    Ok(u)
}

/// A name for a host, a fleet or a tenant: letters, digits, `.`, `-`, `_`.
pub(crate) fn name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// Validates `[state]`.
pub(super) fn parse_state(
    src: &Source<'_>,
    raw: RawState,
    base: &std::path::Path,
    problems: &mut Vec<Problem>,
) -> StateConfig {
    let mut out = StateConfig::default();
    for (field, v, target) in [
        ("state.host", &raw.host, &mut out.host),
        ("state.fleet", &raw.fleet, &mut out.fleet),
    ] {
        if let Some(v) = v {
            if name_ok(v.get_ref()) {
                v.get_ref().clone_into(target);
            } else {
                problems.push(src.error(
                    v.span().start,
                    format!(
                        "{field} `{}`: use letters, digits, `.`, `-` and `_` (at most 64)",
                        v.get_ref()
                    ),
                ));
            }
        }
    }
    if let Some(l) = &raw.lease {
        match parse_duration(src, "state.lease", l, Duration::from_secs(3600)) {
            Ok(d) if d >= Duration::from_secs(3) => out.lease = d,
            Ok(_) => problems.push(src.error(
                l.span().start,
                "state.lease: at least 3s (it is renewed every third of it)",
            )),
            Err(p) => problems.push(p),
        }
    }
    let Some(url) = raw.url else {
        for (f, set) in [
            ("password", raw.password.is_some()),
            ("tls", raw.tls.is_some()),
            ("tls_ca", raw.tls_ca.is_some()),
        ] {
            if set {
                problems.push(src.error(
                    0,
                    format!("state.{f} is set but state.url is not: set url = \"postgres://…\" or remove it"),
                ));
            }
        }
        return out;
    };
    let parsed = match database_url(url.get_ref(), "state.url", "state.password") {
        Ok(u) => u,
        Err(why) => {
            problems.push(src.error(url.span().start, why));
            return out;
        }
    };
    let loopback = parsed.host_str().is_some_and(|h| {
        h == "localhost"
            || h.ends_with(".localhost")
            || h.trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    });
    let tls = match raw.tls.as_ref() {
        None => PgTls::VerifyFull,
        Some(t) => PgTls::parse(t.get_ref()).unwrap_or_else(|| {
            problems.push(src.error(
                t.span().start,
                format!("state.tls `{}`: one of {}", t.get_ref(), PgTls::NAMES),
            ));
            PgTls::VerifyFull
        }),
    };
    if !loopback && matches!(tls, PgTls::Disable | PgTls::Prefer | PgTls::Require) {
        problems.push(Problem {
            severity: Severity::Warning,
            ..src.error(
                raw.tls.as_ref().map_or(0, |t| t.span().start),
                format!(
                    "state.tls = \"{}\" to a database that is not on loopback: its certificate is not verified; use verify-full with tls_ca",
                    tls.name()
                ),
            )
        });
    }
    let password = raw
        .password
        .as_ref()
        .and_then(|p| secret_ref(src, "state.password", p, false, problems));
    out.postgres = Some(PostgresConfig {
        url: parsed.to_string(),
        password,
        tls,
        tls_ca: raw.tls_ca.map(|c| base.join(c)),
    });
    out
}
