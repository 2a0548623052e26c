//! The delivery channels behind the daemon's outbox: e-mail over SMTP
//! (`lettre`: STARTTLS, implicit TLS, or plain to a loopback relay) and
//! chat incoming webhooks (Microsoft Teams, Slack). Each message is plain
//! text; no channel ever receives a secret (the texts are built from the
//! drill record, which holds none).

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;

use super::NotifyError;
use crate::config::{ChatFormat, NotifyConfig, SmtpConfig, SmtpSecurity};

/// What a notification is about (escalations also go to `escalate_to`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A drill starts now: the SOC must know the alert is a drill.
    Announce,
    /// A drill's verdict.
    Report,
    /// A FAIL, or an ERROR after the sign-in was attempted.
    Escalation,
    /// More than `max_days` since the last PASS.
    Overdue,
    /// A custodian must bring or touch the key.
    Touch,
    /// A drill file is broken: the drill is disabled.
    Disabled,
}

impl Kind {
    /// The name stored in the outbox.
    pub fn name(self) -> &'static str {
        match self {
            Self::Announce => "announce",
            Self::Report => "report",
            Self::Escalation => "escalation",
            Self::Overdue => "overdue",
            Self::Touch => "touch",
            Self::Disabled => "disabled",
        }
    }

    /// From the stored name.
    pub fn from_name(s: &str) -> Option<Self> {
        [
            Self::Announce,
            Self::Report,
            Self::Escalation,
            Self::Overdue,
            Self::Touch,
            Self::Disabled,
        ]
        .into_iter()
        .find(|k| k.name() == s)
    }

    fn escalates(self) -> bool {
        matches!(self, Self::Escalation | Self::Overdue | Self::Touch)
    }
}

struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    cfg: SmtpConfig,
}

struct Chat {
    url: secrecy::SecretString,
    format: ChatFormat,
}

/// The configured channels, secrets resolved once.
pub struct Channels {
    mail: Option<Mailer>,
    chats: Vec<Chat>,
    http: reqwest::Client,
}

fn err(channel: &str, reason: impl std::fmt::Display) -> NotifyError {
    NotifyError {
        channel: channel.to_owned(),
        reason: reason.to_string(),
    }
}

impl Channels {
    /// Builds the channels of `cfg`, resolving its secret references.
    pub fn new(cfg: &NotifyConfig) -> Result<Self, NotifyError> {
        let mail = match &cfg.smtp {
            None => None,
            Some(s) => {
                let builder = match s.security {
                    SmtpSecurity::StartTls => {
                        AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&s.host)
                            .map_err(|e| err("smtp", e))?
                    }
                    SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&s.host)
                        .map_err(|e| err("smtp", e))?,
                    SmtpSecurity::Plain => {
                        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host)
                    }
                };
                let mut builder = builder.port(s.port).timeout(Some(Duration::from_secs(30)));
                if let Some(user) = &s.username {
                    let password = match &s.password {
                        Some(p) => p
                            .resolve()
                            .map_err(|e| err("smtp", format!("notify.smtp.password: {e}")))?
                            .expose_secret()
                            .to_owned(),
                        None => String::new(),
                    };
                    builder = builder.credentials(Credentials::new(user.clone(), password));
                }
                Some(Mailer {
                    transport: builder.build(),
                    cfg: s.clone(),
                })
            }
        };
        let mut chats = Vec::new();
        for (i, w) in cfg.webhooks.iter().enumerate() {
            let url = w
                .url
                .resolve()
                .map_err(|e| err(&format!("webhook:{i}"), format!("notify.webhook.url: {e}")))?;
            chats.push(Chat {
                url,
                format: w.format,
            });
        }
        let http = crate::support::http::client().map_err(|e| err("webhook", e))?;
        Ok(Self { mail, chats, http })
    }

    /// The channel names, one outbox row each per notification.
    pub fn names(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.mail.is_some() {
            v.push("smtp".to_owned());
        }
        v.extend((0..self.chats.len()).map(|i| format!("webhook:{i}")));
        v
    }

    /// Whether any channel is configured.
    pub fn any(&self) -> bool {
        self.mail.is_some() || !self.chats.is_empty()
    }

    /// Delivers one message on `channel`.
    pub async fn send(
        &self,
        channel: &str,
        kind: Kind,
        subject: &str,
        body: &str,
    ) -> Result<String, NotifyError> {
        if channel == "smtp" {
            let m = self
                .mail
                .as_ref()
                .ok_or_else(|| err(channel, "not configured"))?;
            let mut b = Message::builder()
                .from(m.cfg.from.parse().map_err(|e| err(channel, e))?)
                .subject(subject)
                .header(ContentType::TEXT_PLAIN);
            let mut to = m.cfg.to.clone();
            if kind.escalates() {
                to.extend(m.cfg.escalate_to.iter().cloned());
            }
            for t in &to {
                b = b.to(t.parse().map_err(|e| err(channel, e))?);
            }
            let msg = b.body(body.to_owned()).map_err(|e| err(channel, e))?;
            m.transport.send(msg).await.map_err(|e| err(channel, e))?;
            return Ok(format!("mailed to {}", to.join(", ")));
        }
        let i: usize = channel
            .strip_prefix("webhook:")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| err(channel, "unknown channel"))?;
        let c = self
            .chats
            .get(i)
            .ok_or_else(|| err(channel, "not configured"))?;
        let text = format!("{subject}\n\n{body}");
        // Both incoming-webhook kinds take a JSON object with a `text`
        // field: Slack, https://api.slack.com/messaging/webhooks
        // (`{"text": "Hello, world."}`); Teams,
        // https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-connectors/how-to/add-incoming-webhook
        // (`{"text": "Hello World"}`).
        let payload = match c.format {
            ChatFormat::Teams | ChatFormat::Slack => serde_json::json!({ "text": text }),
        };
        let resp = self
            .http
            .post(c.url.expose_secret())
            .json(&payload)
            .send()
            .await
            // Never the URL: it holds the webhook's token.
            .map_err(|e| err(channel, e.without_url()))?;
        if !resp.status().is_success() {
            return Err(err(channel, format!("HTTP {}", resp.status().as_u16())));
        }
        Ok(match c.format {
            ChatFormat::Teams => "posted to Teams".to_owned(),
            ChatFormat::Slack => "posted to Slack".to_owned(),
        })
    }
}
