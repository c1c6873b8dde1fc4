//! `gatehouse keys ...`: the command-line client of the admin API.
//!
//! The binary dispatches its `keys` subcommand here. Every command is an
//! HTTP call to the admin listener (`--admin URL`, token from
//! `GATEHOUSE_ADMIN_TOKEN` sent as `Authorization: Bearer`), so the CLI
//! works against a running gateway, local or remote, and never opens the
//! database itself. Output is a readable table, or the raw JSON with
//! `--json`.

use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

/// Default admin API address (the admin listener's default, `[admin] listen`).
pub const DEFAULT_ADMIN_URL: &str = "http://127.0.0.1:9090";

/// `gatehouse keys` with its connection options.
#[derive(Debug, Clone, Args)]
pub struct KeysArgs {
    /// Admin API base URL.
    #[arg(long, env = "GATEHOUSE_ADMIN_URL", default_value = DEFAULT_ADMIN_URL)]
    pub admin: String,
    /// Admin token (prefer the environment variable over the flag).
    #[arg(long, env = "GATEHOUSE_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: KeysCommand,
}

/// Output options shared by every command.
#[derive(Debug, Clone, Default, Args)]
pub struct Output {
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The `keys` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum KeysCommand {
    /// Create a key (the secret is printed once).
    Create {
        /// Consumer id or name; a new name creates the consumer.
        #[arg(long)]
        owner: String,
        /// Key label.
        #[arg(long)]
        name: Option<String>,
        /// Scopes, comma-separated (`route:orders,method:GET,orders:write`).
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        /// Lifetime, e.g. `90d`.
        #[arg(long)]
        expires: Option<String>,
        /// Plan.
        #[arg(long)]
        plan: Option<String>,
        /// Consumer group (when the consumer is created).
        #[arg(long)]
        group: Option<String>,
        /// Environment segment (`live`, `test`, ...).
        #[arg(long)]
        env: Option<String>,
        #[command(flatten)]
        out: Output,
    },
    /// List keys.
    List {
        /// Only this consumer's keys (id or name).
        #[arg(long)]
        consumer: Option<String>,
        /// Only keys in this state (active, retiring, expired, revoked).
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        out: Output,
    },
    /// Show one key.
    Show {
        /// Key id.
        id: String,
        #[command(flatten)]
        out: Output,
    },
    /// Edit a key's name, scopes, plan, expiry or metadata (audited).
    Update {
        /// Key id.
        id: String,
        /// New label.
        #[arg(long)]
        name: Option<String>,
        /// New scopes, comma-separated (replacing the old ones; `""` for none).
        #[arg(long, value_delimiter = ',', num_args = 0..)]
        scopes: Option<Vec<String>>,
        /// New plan override (`none` to fall back to the consumer's plan).
        #[arg(long)]
        plan: Option<String>,
        /// New expiry, RFC 3339 (`2027-01-01T00:00:00Z`), or `never`.
        #[arg(long)]
        expires_at: Option<String>,
        /// Metadata entry `KEY=VALUE` (repeatable); replaces the whole
        /// metadata object with the entries given.
        #[arg(long = "meta", value_name = "KEY=VALUE")]
        meta: Vec<String>,
        /// Remove all metadata.
        #[arg(long, conflicts_with = "meta")]
        clear_meta: bool,
        #[command(flatten)]
        out: Output,
    },
    /// Rotate a key: issue a successor, keep the old one for a grace period.
    Rotate {
        /// Key id.
        id: String,
        /// How long the old key keeps working (`0s` for immediately).
        #[arg(long)]
        grace: Option<String>,
        /// Lifetime of the new key.
        #[arg(long)]
        expires: Option<String>,
        #[command(flatten)]
        out: Output,
    },
    /// Revoke a key at once.
    Revoke {
        /// Key id.
        id: String,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        out: Output,
    },
    /// Show the audit log, of one key or of everything.
    Audit {
        /// Key id.
        id: Option<String>,
        /// How many entries (newest first).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        out: Output,
    },
    /// List consumers.
    Consumers {
        #[command(flatten)]
        out: Output,
    },
}

/// Runs a command against the admin API, printing to stdout.
pub async fn run(cmd: KeysCommand, admin_url: &str, token: Option<&str>) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    run_to(cmd, admin_url, token, &mut out).await
}

/// Runs `gatehouse keys` from parsed [`KeysArgs`].
pub async fn run_args(args: KeysArgs) -> anyhow::Result<()> {
    run(args.command, &args.admin, args.token.as_deref()).await
}

fn check_duration(flag: &str, v: &Option<String>) -> anyhow::Result<()> {
    if let Some(v) = v {
        humantime::parse_duration(v)
            .with_context(|| format!("--{flag} {v:?} is not a duration (try 24h, 90d, 0s)"))?;
    }
    Ok(())
}

fn seg(id: &str) -> String {
    percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Runs a command, writing output to `w`.
pub async fn run_to(
    cmd: KeysCommand,
    admin_url: &str,
    token: Option<&str>,
    w: &mut dyn Write,
) -> anyhow::Result<()> {
    let base = admin_url.trim_end_matches('/');
    url::Url::parse(base).with_context(|| format!("--admin {admin_url:?} is not a URL"))?;
    let client = Client {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?,
        base: base.to_string(),
        token: token.map(str::to_string),
    };
    match cmd {
        KeysCommand::Create {
            owner,
            name,
            scopes,
            expires,
            plan,
            group,
            env,
            out,
        } => {
            check_duration("expires", &expires)?;
            let body = json!({
                "owner": owner, "name": name, "scopes": scopes, "expires_in": expires,
                "plan": plan, "group": group, "environment": env,
            });
            let v = client
                .send("POST", "/v1/keys", Some(strip_nulls(body)))
                .await?;
            if out.json {
                return print_json(w, &v);
            }
            print_issued(w, &v)
        }
        KeysCommand::List {
            consumer,
            status,
            out,
        } => {
            let mut q = url::form_urlencoded::Serializer::new(String::new());
            if let Some(c) = &consumer {
                q.append_pair("consumer", c);
            }
            if let Some(s) = &status {
                q.append_pair("status", s);
            }
            let q = q.finish();
            let path = if q.is_empty() {
                "/v1/keys".to_string()
            } else {
                format!("/v1/keys?{q}")
            };
            let v = client.send("GET", &path, None).await?;
            if out.json {
                return print_json(w, &v);
            }
            let rows: Vec<Vec<String>> = v["keys"]
                .as_array()
                .map(|a| a.iter().map(key_row).collect())
                .unwrap_or_default();
            print_table(
                w,
                &[
                    "ID",
                    "NAME",
                    "CONSUMER",
                    "STATUS",
                    "SCOPES",
                    "EXPIRES",
                    "LAST USED",
                ],
                &rows,
            )
        }
        KeysCommand::Show { id, out } => {
            let v = client
                .send("GET", &format!("/v1/keys/{}", seg(&id)), None)
                .await?;
            if out.json {
                return print_json(w, &v);
            }
            print_key(w, &v)
        }
        KeysCommand::Rotate {
            id,
            grace,
            expires,
            out,
        } => {
            check_duration("grace", &grace)?;
            check_duration("expires", &expires)?;
            let body = strip_nulls(json!({ "grace": grace, "expires_in": expires }));
            let v = client
                .send("POST", &format!("/v1/keys/{}/rotate", seg(&id)), Some(body))
                .await?;
            if out.json {
                return print_json(w, &v);
            }
            print_issued(w, &v)?;
            writeln!(
                w,
                "previous key {} keeps working until {}",
                text(&v["previous"]["id"]),
                text(&v["previous"]["grace_until"])
            )?;
            Ok(())
        }
        KeysCommand::Update {
            id,
            name,
            scopes,
            plan,
            expires_at,
            meta,
            clear_meta,
            out,
        } => {
            let body = update_body(name, scopes, plan, expires_at, &meta, clear_meta)?;
            let v = client
                .send("PATCH", &format!("/v1/keys/{}", seg(&id)), Some(body))
                .await?;
            if out.json {
                return print_json(w, &v);
            }
            writeln!(w, "updated {}", text(&v["id"]))?;
            print_key(w, &v)
        }
        KeysCommand::Revoke { id, reason, out } => {
            let body = strip_nulls(json!({ "reason": reason }));
            let v = client
                .send("POST", &format!("/v1/keys/{}/revoke", seg(&id)), Some(body))
                .await?;
            if out.json {
                return print_json(w, &v);
            }
            writeln!(w, "revoked {}", text(&v["id"]))?;
            Ok(())
        }
        KeysCommand::Audit { id, limit, out } => {
            let path = match &id {
                Some(id) => format!("/v1/keys/{}/audit?limit={limit}", seg(id)),
                None => format!("/v1/audit?limit={limit}"),
            };
            let v = client.send("GET", &path, None).await?;
            if out.json {
                return print_json(w, &v);
            }
            let rows: Vec<Vec<String>> = v["entries"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|e| {
                            vec![
                                text(&e["at"]),
                                text(&e["action"]),
                                text(&e["key_id"]),
                                text(&e["actor"]),
                                e["detail"].to_string(),
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default();
            print_table(w, &["TIME", "ACTION", "KEY", "ACTOR", "DETAIL"], &rows)
        }
        KeysCommand::Consumers { out } => {
            let v = client.send("GET", "/v1/consumers", None).await?;
            if out.json {
                return print_json(w, &v);
            }
            let rows: Vec<Vec<String>> = v["consumers"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|c| {
                            vec![
                                text(&c["id"]),
                                text(&c["name"]),
                                text(&c["plan"]),
                                text(&c["group"]),
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default();
            print_table(w, &["ID", "NAME", "PLAN", "GROUP"], &rows)
        }
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    async fn send(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let url = format!("{}{}", self.base, path);
        let mut req = match method {
            "POST" => self.http.post(&url),
            "PATCH" => self.http.patch(&url),
            _ => self.http.get(&url),
        };
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req
            .send()
            .await
            .with_context(|| format!("cannot reach the admin API at {}", self.base))?;
        let status = res.status();
        let bytes = res
            .bytes()
            .await
            .context("reading the admin API response")?;
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() {
            let detail = v["detail"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(300).collect());
            let code = v["code"].as_str().unwrap_or("error");
            bail!("{} {code}: {detail}", status.as_u16());
        }
        Ok(v)
    }
}

fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty()))
                .collect(),
        ),
        v => v,
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The `PATCH /v1/keys/{id}` body for `keys update`: only what was given.
fn update_body(
    name: Option<String>,
    scopes: Option<Vec<String>>,
    plan: Option<String>,
    expires_at: Option<String>,
    meta: &[String],
    clear_meta: bool,
) -> anyhow::Result<Value> {
    let mut body = serde_json::Map::new();
    if let Some(n) = name {
        body.insert("name".into(), json!(n));
    }
    if let Some(s) = scopes {
        let s: Vec<String> = s.into_iter().filter(|s| !s.is_empty()).collect();
        body.insert("scopes".into(), json!(s));
    }
    if let Some(p) = plan {
        body.insert(
            "plan".into(),
            if p == "none" { Value::Null } else { json!(p) },
        );
    }
    if let Some(e) = expires_at {
        body.insert(
            "expires_at".into(),
            if e == "never" { Value::Null } else { json!(e) },
        );
    }
    if clear_meta {
        body.insert("metadata".into(), json!({}));
    } else if !meta.is_empty() {
        let mut m = serde_json::Map::new();
        for kv in meta {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--meta `{kv}`: expected KEY=VALUE"))?;
            m.insert(k.to_string(), json!(v));
        }
        body.insert("metadata".into(), Value::Object(m));
    }
    if body.is_empty() {
        anyhow::bail!("nothing to change: give --name, --scopes, --plan, --expires-at or --meta");
    }
    Ok(Value::Object(body))
}

fn key_row(k: &Value) -> Vec<String> {
    let scopes = k["scopes"]
        .as_array()
        .map(|a| a.iter().map(text).collect::<Vec<_>>().join(","))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "*".into());
    let consumer = match k["consumer_name"].as_str() {
        Some(name) => format!("{name} ({})", text(&k["consumer_id"])),
        None => text(&k["consumer_id"]),
    };
    vec![
        text(&k["id"]),
        text(&k["name"]),
        consumer,
        text(&k["status"]),
        scopes,
        text(&k["expires_at"]),
        text(&k["last_used_at"]),
    ]
}

fn print_json(w: &mut dyn Write, v: &Value) -> anyhow::Result<()> {
    writeln!(w, "{}", serde_json::to_string_pretty(v)?)?;
    Ok(())
}

fn print_key(w: &mut dyn Write, k: &Value) -> anyhow::Result<()> {
    for field in [
        "id",
        "name",
        "status",
        "consumer_id",
        "environment",
        "scopes",
        "plan",
        "created_at",
        "created_by",
        "expires_at",
        "last_used_at",
        "predecessor",
        "successor",
        "grace_until",
        "revoked_at",
        "revoked_reason",
    ] {
        let v = &k[field];
        let shown = match v {
            Value::Array(a) if a.is_empty() => "-".to_string(),
            Value::Array(a) => a.iter().map(text).collect::<Vec<_>>().join(","),
            v => text(v),
        };
        writeln!(w, "{:<15} {shown}", format!("{field}:"))?;
    }
    Ok(())
}

fn print_issued(w: &mut dyn Write, v: &Value) -> anyhow::Result<()> {
    print_key(w, &v["key"])?;
    writeln!(w)?;
    writeln!(w, "secret:         {}", text(&v["secret"]))?;
    writeln!(w, "Store this secret now: it is shown only once.")?;
    Ok(())
}

fn print_table(w: &mut dyn Write, headers: &[&str], rows: &[Vec<String>]) -> anyhow::Result<()> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(wd) = widths.get_mut(i) {
                *wd = (*wd).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<width$}  ", width = widths[i]));
            }
        }
        s.trim_end().to_string()
    };
    writeln!(w, "{}", line(headers.to_vec()))?;
    for r in rows {
        writeln!(w, "{}", line(r.iter().map(String::as_str).collect()))?;
    }
    if rows.is_empty() {
        writeln!(w, "(none)")?;
    }
    Ok(())
}
