//! The `[webhook]` table of a flow file: what requests a webhook accepts, how they are
//! verified, deduplicated and answered.

use std::time::Duration;

use toml::de::{DeTable, DeValue};

use super::{Item, Loader, Scope};
use crate::flow::env::interpolate;
use crate::flow::id::{FlowId, StepId};
use crate::flow::mapping::Mapping;
use crate::flow::query::Query;
use crate::flow::{
    DEFAULT_DEDUPE_WINDOW, DEFAULT_MAX_BODY, DEFAULT_MAX_HEAD, DEFAULT_RESPOND_TIMEOUT, DedupeFrom,
    Handshakes, MAX_DEDUPE_WINDOW, MAX_MAX_BODY, MAX_MAX_HEAD, MAX_RESPOND_TIMEOUT, MIN_MAX_HEAD,
    Respond, WebhookSpec,
};
use crate::verify::{self, Algorithm, Encoding, Secrets, TokenPlace, Verify};

const WEBHOOK_KEYS: &[&str] = &[
    "methods",
    "max_body",
    "max_head",
    "dedupe",
    "dedupe_window",
    "respond",
    "respond_timeout",
    "verify",
    "slack_url_verification",
    "meta_verify_token",
    "graph_validation",
    "echo_challenge",
    "allow_ips",
    "answer",
];

/// The keys of `[webhook] answer`.
const ANSWER_KEYS: &[&str] = &["status", "headers", "body"];

/// The statuses a `respond = "accepted"` answer may have: the webhook was stored, and these
/// say so to every sender.
const ACCEPTED_STATUSES: &[u64] = &[200, 201, 202, 204];

/// The `verify` schemes and the keys each takes.
const SCHEMES_KEYS: &[(&str, &[&str])] = &[
    ("github", &["scheme", "secret"]),
    ("stripe", &["scheme", "secret", "tolerance"]),
    ("slack", &["scheme", "secret", "tolerance"]),
    ("standard-webhooks", &["scheme", "secret", "tolerance"]),
    (
        "hmac",
        &[
            "scheme",
            "secret",
            "header",
            "prefix",
            "encoding",
            "algorithm",
        ],
    ),
    ("token", &["scheme", "token", "header", "query"]),
    ("basic", &["scheme", "username", "password"]),
];
fn scheme_names() -> String {
    let names: Vec<&str> = SCHEMES_KEYS.iter().map(|(name, _)| *name).collect();
    names.join(", ")
}

/// The widest `tolerance` of a signed timestamp.
const MAX_TOLERANCE: Duration = Duration::from_secs(24 * 3600);

/// The delivery id each sender puts on a webhook, and keeps on its redeliveries: the `dedupe`
/// of a flow verified with that sender's scheme, unless the flow says otherwise.
pub(crate) fn scheme_dedupe(scheme: &str) -> Option<&'static str> {
    match scheme {
        "github" => Some("$.webhook.headers['x-github-delivery']"),
        "standard-webhooks" => Some("$.webhook.headers['webhook-id']"),
        "stripe" => Some("$.webhook.body.id"),
        "slack" => Some("$.webhook.body.event_id"),
        _ => None,
    }
}

impl Loader<'_, '_> {
    pub(super) fn webhook(&mut self, item: &Item<'_>) -> Option<WebhookSpec> {
        let DeValue::Table(table) = item.get_ref() else {
            self.wrong_type(item, "webhook", "a table (`[webhook]`)");
            return None;
        };
        self.unknown_keys(table, WEBHOOK_KEYS, "in [webhook]");
        let defaults = WebhookSpec::default();
        let methods = match table.get("methods") {
            None => Some(defaults.methods),
            Some(item) => self.methods(item),
        };
        let max_body = match table.get("max_body") {
            None => Some(DEFAULT_MAX_BODY),
            Some(item) => self.size(item, "max_body", 1, MAX_MAX_BODY),
        };
        let max_head = match table.get("max_head") {
            None => Some(DEFAULT_MAX_HEAD),
            Some(item) => self.size(item, "max_head", MIN_MAX_HEAD, MAX_MAX_HEAD),
        };
        let verify = match table.get("verify") {
            None => Some(None),
            Some(item) => self.verify(item).map(Some),
        };
        let scheme = verify.as_ref().and_then(|v| v.as_ref().map(Verify::scheme));
        let dedupe = self.dedupe_setting(table.get("dedupe"), scheme);
        let dedupe_window = match (&dedupe, table.get("dedupe_window")) {
            (Some(Some((_, DedupeFrom::Scheme(_)))), None) => Some(Some(DEFAULT_DEDUPE_WINDOW)),
            (_, None) => Some(None),
            (Some(None), Some(item)) => {
                self.error(
                    item.span().start,
                    "`dedupe_window` only applies with `dedupe` (or a `verify` scheme that \
                     brings one)",
                );
                None
            }
            (_, Some(item)) => self
                .duration(item, "dedupe_window", MAX_DEDUPE_WINDOW)
                .map(Some),
        };
        let respond = self.respond(table.get("respond"), table.get("respond_timeout"));
        let handshakes = self.handshakes(table);
        let allow_ips = match table.get("allow_ips") {
            None => Some(None),
            Some(item) => self.allow_ips(item).map(Some),
        };
        let (dedupe, dedupe_from) = match dedupe? {
            Some((query, from)) => (Some(query), Some(from)),
            None => (None, None),
        };
        Some(WebhookSpec {
            methods: methods?,
            max_body: max_body?,
            max_head: max_head?,
            dedupe,
            dedupe_from,
            dedupe_window: dedupe_window?,
            respond: respond?,
            verify: verify?,
            handshakes: handshakes?,
            allow_ips: allow_ips?,
        })
    }

    /// `allow_ips = ["192.0.2.0/24", …]`: at least one network.
    fn allow_ips(&mut self, item: &Item<'_>) -> Option<Vec<ipnet::IpNet>> {
        let expected = "an array of networks, such as [\"192.0.2.0/24\", \"2001:db8::/32\"]";
        let DeValue::Array(array) = item.get_ref() else {
            self.wrong_type(item, "allow_ips", expected);
            return None;
        };
        if array.is_empty() {
            self.error(
                item.span().start,
                "`allow_ips` lists no network, so no webhook could arrive; leave it out to accept any sender",
            );
            return None;
        }
        let mut nets = Vec::new();
        let mut ok = true;
        for element in array.iter() {
            let Some(text) = self.string(element, "allow_ips") else {
                ok = false;
                continue;
            };
            match crate::flow::parse_ip_net(text) {
                Ok(net) => nets.push(net),
                Err(why) => {
                    self.error(element.span().start, format!("`allow_ips`: {why}"));
                    ok = false;
                }
            }
        }
        ok.then_some(nets)
    }

    /// `[webhook] answer`, read once the steps are known (its queries may read them): a table
    /// of `status`, `headers` and `body`, as a mapping over the run context.
    pub(super) fn answer(
        &mut self,
        item: &Item<'_>,
        respond: Option<Respond>,
        scope: &Scope<'_>,
        flow: Option<FlowId>,
    ) -> Option<Mapping> {
        let DeValue::Table(table) = item.get_ref() else {
            self.wrong_type(
                item,
                "answer",
                "a table such as { status = 200, body = \"ok\" }",
            );
            return None;
        };
        self.unknown_keys(table, ANSWER_KEYS, "in answer");
        if let Some(headers) = table.get("headers")
            && !matches!(headers.get_ref(), DeValue::Table(_))
        {
            self.wrong_type(headers, "headers", "a table of header names and values");
            return None;
        }
        let before = self.problems.len();
        let node = self.mapping(item, "answer", scope);
        if self.problems.len() > before {
            return None;
        }
        let step = StepId::new("webhook").ok()?;
        let mapping = Mapping::new(flow?, step, node);
        let at = item.span().start;
        match respond {
            Some(Respond::Accepted) | None => {
                if !mapping.is_constant() {
                    self.error(
                        at,
                        "with `respond = \"accepted\"` the answer is sent before the run, so it \
                         cannot read the run context: write literal values, or use \
                         `respond = \"result\"`",
                    );
                    return None;
                }
                let value = mapping.evaluate(&serde_json::Value::Null).ok()?;
                match value.get("status").map(|s| s.as_u64()) {
                    None => {}
                    Some(Some(status)) if ACCEPTED_STATUSES.contains(&status) => {}
                    Some(_) => {
                        self.error(
                            table.get("status").map_or(at, |s| s.span().start),
                            "with `respond = \"accepted\"` the answer's `status` is one of 200, \
                             201, 202, 204: the webhook was stored",
                        );
                        return None;
                    }
                }
                if let Err(why) = crate::flow::check_answer(&value) {
                    self.error(at, why);
                    return None;
                }
            }
            Some(Respond::Result { .. }) => {
                if let Some(status) = table.get("status")
                    && let DeValue::Integer(_) = status.get_ref()
                    && let Ok(value) = mapping.evaluate(&serde_json::Value::Null)
                    && let Err(why) = crate::flow::check_answer(&value)
                {
                    self.error(status.span().start, why);
                    return None;
                }
            }
        }
        Some(mapping)
    }

    /// The handshake keys; see [`Handshakes`].
    fn handshakes(&mut self, table: &DeTable<'_>) -> Option<Handshakes> {
        let slack = self.flag(table, "slack_url_verification");
        let graph = self.flag(table, "graph_validation");
        let echo_challenge = self.flag(table, "echo_challenge");
        let meta_verify_token = match table.get("meta_verify_token") {
            None => Some(None),
            Some(item) => self.secret(item, "meta_verify_token").map(Some),
        };
        Some(Handshakes {
            slack: slack?,
            meta_verify_token: meta_verify_token?,
            graph: graph?,
            echo_challenge: echo_challenge?,
        })
    }

    /// An optional `true`/`false` key, `false` when absent.
    fn flag(&mut self, table: &DeTable<'_>, key: &str) -> Option<bool> {
        match table.get(key) {
            None => Some(false),
            Some(item) => match item.get_ref() {
                DeValue::Boolean(value) => Some(*value),
                _ => {
                    self.wrong_type(item, key, "true or false");
                    None
                }
            },
        }
    }

    /// `verify = { scheme = "…", … }`: see [`crate::verify`].
    fn verify(&mut self, item: &Item<'_>) -> Option<Verify> {
        let DeValue::Table(table) = item.get_ref() else {
            self.wrong_type(
                item,
                "verify",
                "a table such as { scheme = \"github\", secret = \"${GITHUB_WEBHOOK_SECRET}\" }",
            );
            return None;
        };
        let Some(scheme_item) = table.get("scheme") else {
            self.error(
                item.span().start,
                format!("`verify` needs a `scheme`: one of {}", scheme_names()),
            );
            return None;
        };
        let scheme = self.string(scheme_item, "scheme")?;
        let Some((_, keys)) = SCHEMES_KEYS.iter().find(|(name, _)| *name == scheme) else {
            self.error(
                scheme_item.span().start,
                format!(
                    "`verify` scheme \"{scheme}\" is not one of {}",
                    scheme_names()
                ),
            );
            return None;
        };
        self.unknown_keys(table, keys, &format!("in verify (scheme \"{scheme}\")"));
        let at = item.span().start;
        let text = |loader: &mut Self, key: &str, required: bool| -> Option<Option<String>> {
            match table.get(key) {
                Some(value) => loader.secret(value, key).map(Some),
                None if required => {
                    loader.error(
                        at,
                        format!("`verify` with scheme \"{scheme}\" needs `{key}`"),
                    );
                    None
                }
                None => Some(None),
            }
        };
        // A secret, or a list of them to rotate (newest first), each turned into its key by
        // `key` (which says why it cannot be one), where it is written.
        let secrets = |loader: &mut Self,
                       name: &str,
                       key: &dyn Fn(String) -> Result<Vec<u8>, String>|
         -> Option<Secrets> {
            let Some(item) = table.get(name) else {
                loader.error(
                    at,
                    format!("`verify` with scheme \"{scheme}\" needs `{name}`"),
                );
                return None;
            };
            let items: Vec<&Item<'_>> = match item.get_ref() {
                DeValue::Array(array) if array.is_empty() => {
                    loader.error(
                        item.span().start,
                        format!("`{name}` lists no secret; write one, or the new and the old while rotating"),
                    );
                    return None;
                }
                DeValue::Array(array) => array.iter().collect(),
                _ => vec![item],
            };
            let mut keys = Vec::new();
            for item in items {
                let value = loader.secret(item, name)?;
                match key(value) {
                    Ok(bytes) => keys.push(bytes),
                    Err(why) => {
                        loader.error(item.span().start, format!("`{name}`: {why}"));
                        return None;
                    }
                }
            }
            Secrets::new(keys)
        };
        // An HMAC key shorter than `MIN_KEY_BYTES` is refused where it is written.
        let hmac_key = |secret: String| match verify::key_too_short(secret.as_bytes()) {
            Some(why) => Err(why),
            None => Ok(secret.into_bytes()),
        };
        let plain = |secret: String| Ok(secret.into_bytes());
        let hmac_secret = |loader: &mut Self| secrets(loader, "secret", &hmac_key);
        let tolerance = match table.get("tolerance") {
            None => Some(verify::DEFAULT_TOLERANCE),
            Some(item) => self.duration(item, "tolerance", MAX_TOLERANCE),
        };
        let verify = match scheme {
            "github" => Verify::Github {
                secret: hmac_secret(self)?,
            },
            "stripe" => Verify::Stripe {
                secret: hmac_secret(self)?,
                tolerance: tolerance?,
            },
            "slack" => Verify::Slack {
                secret: hmac_secret(self)?,
                tolerance: tolerance?,
            },
            "standard-webhooks" => {
                let key = secrets(self, "secret", &|secret: String| {
                    verify::standard_webhooks_key(&secret)
                })?;
                Verify::StandardWebhooks {
                    key,
                    tolerance: tolerance?,
                }
            }
            "hmac" => {
                let encoding = match text(self, "encoding", false)?.as_deref() {
                    None | Some("hex") => Encoding::Hex,
                    Some("base64") => Encoding::Base64,
                    Some(other) => {
                        self.error(
                            table.get("encoding").map_or(at, |e| e.span().start),
                            format!("`encoding` = \"{other}\" is not one of \"hex\", \"base64\""),
                        );
                        return None;
                    }
                };
                let algorithm = match text(self, "algorithm", false)?.as_deref() {
                    None | Some("sha256") => Algorithm::Sha256,
                    Some("sha512") => Algorithm::Sha512,
                    Some("sha1") => Algorithm::Sha1,
                    Some(other) => {
                        self.error(
                            table.get("algorithm").map_or(at, |e| e.span().start),
                            format!(
                                "`algorithm` = \"{other}\" is not one of \"sha256\", \"sha512\", \"sha1\""
                            ),
                        );
                        return None;
                    }
                };
                Verify::Hmac {
                    secret: hmac_secret(self)?,
                    header: text(self, "header", true)??.to_ascii_lowercase(),
                    prefix: text(self, "prefix", false)?.unwrap_or_default(),
                    encoding,
                    algorithm,
                }
            }
            "token" => {
                let token = secrets(self, "token", &plain)?;
                let header = text(self, "header", false)?;
                let query = text(self, "query", false)?;
                let place = match (header, query) {
                    (None, None) => TokenPlace::Bearer,
                    (Some(header), None) => TokenPlace::Header(header.to_ascii_lowercase()),
                    (None, Some(query)) => TokenPlace::Query(query),
                    (Some(_), Some(_)) => {
                        self.error(at, "`verify` takes the token from a `header` or a `query` parameter, not both");
                        return None;
                    }
                };
                Verify::Token { token, place }
            }
            // "basic", the last of SCHEMES_KEYS.
            _ => Verify::Basic {
                username: text(self, "username", true)??,
                password: secrets(self, "password", &plain)?,
            },
        };
        Some(verify)
    }

    /// A string of `verify`, with `${ENV}` values; never empty, so that an unset-but-empty
    /// variable cannot turn a check off.
    fn secret(&mut self, item: &Item<'_>, what: &str) -> Option<String> {
        let text = self.string(item, what)?;
        let value = match interpolate(text, self.ctx.env) {
            Ok(interpolated) => {
                self.env_used.extend(interpolated.used);
                interpolated.value
            }
            Err(problems) => {
                for problem in problems {
                    let offset = self.offset_in_string(item.span(), text, problem.offset());
                    self.error(offset, problem.message());
                }
                return None;
            }
        };
        if value.is_empty() {
            self.error(item.span().start, format!("`{what}` is empty"));
            return None;
        }
        Some(value)
    }

    /// `respond` and `respond_timeout`, which only goes with `respond = "result"`.
    fn respond(
        &mut self,
        respond: Option<&Item<'_>>,
        timeout: Option<&Item<'_>>,
    ) -> Option<Respond> {
        let result = match respond {
            None => false,
            Some(item) => match self.string(item, "respond")? {
                "accepted" => false,
                "result" => true,
                other => {
                    self.error(
                        item.span().start,
                        format!("`respond` = \"{other}\" is not one of \"accepted\", \"result\""),
                    );
                    return None;
                }
            },
        };
        match (result, timeout) {
            (false, None) => Some(Respond::Accepted),
            (false, Some(item)) => {
                self.error(
                    item.span().start,
                    "`respond_timeout` only applies with `respond = \"result\"`",
                );
                None
            }
            (true, None) => Some(Respond::Result {
                timeout: DEFAULT_RESPOND_TIMEOUT,
            }),
            (true, Some(item)) => Some(Respond::Result {
                timeout: self.duration(item, "respond_timeout", MAX_RESPOND_TIMEOUT)?,
            }),
        }
    }

    /// The flow's dedupe: its own `dedupe` query, none with `dedupe = false`, else its `verify`
    /// scheme's delivery id (see [`scheme_dedupe`]).
    fn dedupe_setting(
        &mut self,
        item: Option<&Item<'_>>,
        scheme: Option<&'static str>,
    ) -> Option<Option<(Query, DedupeFrom)>> {
        match item.map(|item| (item, item.get_ref())) {
            Some((_, DeValue::Boolean(false))) => Some(None),
            Some((item, DeValue::Boolean(true))) => {
                self.error(
                    item.span().start,
                    "`dedupe = true` is not a query: write the JSONPath of the delivery id, such \
                     as \"$.webhook.headers['x-request-id']\", or `false` to turn dedupe off",
                );
                None
            }
            Some((item, _)) => self.dedupe(item).map(|q| Some((q, DedupeFrom::Flow))),
            None => Some(scheme.and_then(|scheme| {
                let query = Query::parse(scheme_dedupe(scheme)?).ok()?;
                Some((query, DedupeFrom::Scheme(scheme)))
            })),
        }
    }

    /// `dedupe`: a singular query on `$.webhook`, read when the webhook arrives.
    fn dedupe(&mut self, item: &Item<'_>) -> Option<Query> {
        self.arrival_query(item, "dedupe", "$.webhook.headers['x-github-delivery']")
    }

    /// A key (`what`) whose value is a singular query on `$.webhook`, read when the webhook
    /// arrives, before any step runs; `example` shows one in the error messages.
    pub(super) fn arrival_query(
        &mut self,
        item: &Item<'_>,
        what: &str,
        example: &str,
    ) -> Option<Query> {
        let text = self.string(item, what)?;
        let start = item.span().start;
        if !text.starts_with('$') || text.starts_with("$$") {
            self.error(
                start,
                format!(
                    "`{what}` must be a JSONPath query starting with `$.webhook`, such as \
                     \"{example}\""
                ),
            );
            return None;
        }
        let roots = Query::parse(text)
            .ok()
            .and_then(|query| query.segment_names(0).map(|names| names == ["webhook"]));
        if roots == Some(false) {
            self.error(
                start,
                format!(
                    "`{what}` is read when the webhook arrives, before any step runs: \
                     `{text}` must start with `$.webhook`"
                ),
            );
            return None;
        }
        // Reports a query that does not parse, where it stops.
        let no_steps = Scope {
            index: 0,
            written: &[],
        };
        let query = self.query(text, item.span(), &no_steps)?;
        if !query.is_singular() {
            self.error(
                start,
                format!(
                    "`{what}` must select at most one value (names and indexes only), \
                     and `{text}` can select several"
                ),
            );
            return None;
        }
        Some(query)
    }

    fn methods(&mut self, item: &Item<'_>) -> Option<Vec<String>> {
        let DeValue::Array(array) = item.get_ref() else {
            self.wrong_type(
                item,
                "methods",
                "an array of HTTP methods, such as [\"POST\"]",
            );
            return None;
        };
        if array.is_empty() {
            self.error(
                item.span().start,
                "`methods` must list at least one HTTP method, such as [\"POST\"]",
            );
            return None;
        }
        let mut methods: Vec<String> = Vec::new();
        let mut ok = true;
        for element in array.iter() {
            let Some(method) = self.string(element, "methods") else {
                ok = false;
                continue;
            };
            let method = method.to_ascii_uppercase();
            if !is_token(&method) {
                self.error(
                    element.span().start,
                    format!("`{method}` is not an HTTP method: a method is a token such as GET, POST or PUT"),
                );
                ok = false;
            } else if methods.contains(&method) {
                self.error(element.span().start, format!("`{method}` is listed twice"));
                ok = false;
            } else {
                methods.push(method);
            }
        }
        ok.then_some(methods)
    }
}

/// An HTTP method is a token (RFC 9110 §5.6.2).
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
