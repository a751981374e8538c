//! `flottectl`: the admin CLI. It talks to the controller only through the
//! authenticated HTTPS API.

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use flotte_controller::client::AdminClient;
use flotte_controller::ctl::rollout::RolloutCommand;
use flotte_controller::ctl::{agents, keys, output, package, profile, rollout, trust};
use flotte_controller::lab::{self, LabOptions};
use flotte_protocol::api::DeployRequest;
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Administer a Flotte fleet: agents, TUF trust, packages, deployments.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    connection: Connection,
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

/// Where the controller is and how to authenticate.
#[derive(Args)]
struct Connection {
    /// flottectl config file [default: ~/.config/flotte/flottectl.toml]
    #[arg(long, env = "FLOTTE_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Controller API URL, e.g. https://ctl.example.org:7443
    #[arg(long, env = "FLOTTE_URL", global = true)]
    url: Option<String>,
    /// Admin token.
    #[arg(long, env = "FLOTTE_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// The controller's CA certificate.
    #[arg(long, env = "FLOTTE_CA", global = true)]
    ca: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Enrolled agents and enrollment tokens.
    #[command(subcommand)]
    Agents(AgentsCommand),
    /// Offline ed25519 key files (root, targets, delegated roles).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The TUF roots of trust: root keys, targets key, delegations.
    #[command(subcommand)]
    Trust(TrustCommand),
    /// Packages and releases.
    #[command(subcommand)]
    Package(PackageCommand),
    /// Push a release to agents: `flottectl deploy app@1.2.0 --to all`.
    Deploy {
        /// NAME@VERSION of a published release.
        release: String,
        /// `all`, or a comma-separated list of agent ids or hostnames.
        #[arg(long)]
        to: String,
    },
    /// Per-agent state of every assignment.
    Status,
    /// Phased rollouts: create, list, show, pause, resume, approve, abort, rollback, wait, watch.
    #[command(subcommand)]
    Rollout(RolloutCommand),
    /// Run a local lab: a controller and N agents on loopback; deploy
    /// hello@1.0.0 to all, then roll hello@2.0.0 out in waves while its
    /// health check fails on some agents (see --scenario).
    Lab {
        /// How many agents to start.
        #[arg(long, default_value_t = 20)]
        agents: usize,
        /// How many agents fail the health check of 2.0.0 (phased scenario).
        #[arg(long, default_value_t = 1)]
        unhealthy: usize,
        /// `phased`: waves, the unhealthy agents roll back, the rollout
        /// completes; `halt`: failures cross the limit, the rollout halts and
        /// is rolled back.
        #[arg(long, value_enum, default_value = "phased")]
        scenario: lab::Scenario,
        /// Cumulative waves of the 2.0.0 rollout.
        #[arg(long, default_value = "1,25%,100%")]
        waves: String,
        /// How long each passed wave soaks.
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        soak: Duration,
        /// Keep the lab directory (data, logs) afterwards.
        #[arg(long)]
        keep: bool,
        /// Give up if a deployment or rollout takes longer (e.g. 90s, 5m).
        #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
}

#[derive(Subcommand)]
enum AgentsCommand {
    /// Issue a one-time enrollment token.
    Token {
        /// How long the token stays valid (e.g. 30m, 1h, 7d).
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
    /// List enrolled agents with a summary of their inventory.
    List,
    /// Show one agent's whole inventory.
    Show {
        /// The agent's id or hostname.
        agent: String,
    },
    /// Add tags to an agent (or remove them with --remove); without tags, show them.
    Tag {
        /// The agent's id or hostname.
        agent: String,
        /// Tags: 1-64 characters of a-z, 0-9, '.', '_', '-'.
        tags: Vec<String>,
        /// Remove the tags instead of adding them.
        #[arg(long)]
        remove: bool,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create an ed25519 key pair offline: FILE (secret, 0600) and FILE.pub.
    Generate {
        /// Where to write the secret key. Keep it off the controller.
        #[arg(long, default_value = "signing.key")]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum TrustCommand {
    /// Create root keys (K of N) and the targets key in DIR, sign root v1
    /// (naming the controller's online timestamp and snapshot keys) and an
    /// empty targets v1, and upload them. Give DIR/root.json to agents
    /// (`flotte-agent enroll --trust-root`); keep the keys off the controller.
    Init {
        /// Where the keys and root.json are written. Keep it offline.
        #[arg(long)]
        dir: PathBuf,
        /// How many root keys (N).
        #[arg(long, default_value_t = 1)]
        root_keys: usize,
        /// How many root keys must sign a new root (K).
        #[arg(long, default_value_t = 1)]
        threshold: u64,
    },
    /// Sign and upload the next root version: new root keys and threshold,
    /// signed by enough old *and* new root keys (give each with --sign-with).
    Rotate {
        /// Public key file (KEY.pub) of the new root (repeat).
        #[arg(long = "root-key", required = true)]
        root_keys: Vec<PathBuf>,
        /// How many of the new root keys must sign the next root.
        #[arg(long, default_value_t = 1)]
        threshold: u64,
        /// A new targets public key (KEY.pub); the current one is kept otherwise.
        #[arg(long)]
        targets_key: Option<PathBuf>,
        /// A secret root key (old or new) that signs this root (repeat).
        #[arg(long = "sign-with", required = true)]
        sign_with: Vec<PathBuf>,
        /// Also replace the controller's online timestamp and snapshot keys
        /// (after its data directory was stolen): the controller prepares
        /// new ones and signs with them once this root is stored.
        #[arg(long)]
        new_online_keys: bool,
    },
    /// Every TUF role the controller serves: version, expiry, and a warning
    /// for each offline-signed role that expires within 30 days. Exits 3
    /// if there is a warning, so a monitoring check can run it.
    Status,
    /// Re-sign a targets role (`targets` or a delegated one) with the same
    /// entries and a new year of validity, before it expires.
    Resign {
        /// The role: `targets` or a delegated role.
        role: String,
        /// The role's secret key.
        #[arg(long)]
        key: PathBuf,
    },
    /// Let a team's key sign releases matching PATH patterns (e.g.
    /// 'team-x/*': every version of package team-x) as role ROLE.
    Delegate {
        /// The delegated role's name.
        role: String,
        /// Target pattern the role is trusted for (repeat).
        #[arg(long = "path", required = true)]
        paths: Vec<String>,
        /// The role's public key file (KEY.pub) (repeat).
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
        /// How many of the role's keys must sign.
        #[arg(long, default_value_t = 1)]
        threshold: u64,
        /// The secret targets key that signs the delegation.
        #[arg(long)]
        targets_key: PathBuf,
    },
}

#[derive(Subcommand)]
enum PackageCommand {
    /// Sign, upload and publish a package file.
    Publish {
        file: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long)]
        version: String,
        /// Secret key of the targets role (or of the delegated --role).
        #[arg(long)]
        key: PathBuf,
        /// The TUF targets role to sign as: `targets` or a delegated role.
        #[arg(long, default_value = "targets")]
        role: String,
        /// Only hosts with this OS may install it (e.g. linux).
        #[arg(long)]
        os: Option<String>,
        /// Only hosts with this CPU architecture may install it (e.g. x86_64).
        #[arg(long)]
        arch: Option<String>,
        #[command(flatten)]
        spec: Box<package::SpecArgs>,
    },
    /// Sign that a published release may replace newer versions (a
    /// rollback authorisation). Agents refuse to install a release over a
    /// newer active version without one; a fleet rollback needs it.
    AllowRollback {
        /// The package name.
        name: String,
        /// The older version that may be installed again.
        version: String,
        /// The newest active version it may replace (e.g. the release
        /// being rolled back).
        #[arg(long, value_name = "VERSION")]
        up_to: String,
        /// Secret key of the targets role (or of the delegated --role)
        /// that signed the release.
        #[arg(long)]
        key: PathBuf,
        /// The TUF targets role that lists the release.
        #[arg(long, default_value = "targets")]
        role: String,
    },
    /// List published releases.
    List,
}

/// A reader that goes away (`flottectl status | head`) ends the process quietly,
/// as with other Unix tools, instead of a panic on the next write.
#[allow(unsafe_code)]
fn die_quietly_on_broken_pipe() {
    // SAFETY: restores the default disposition, before any other thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

fn main() -> ExitCode {
    die_quietly_on_broken_pipe();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn client(c: &Connection) -> Result<AdminClient> {
    profile::resolve(c.config.as_deref(), c.url.clone(), c.token.clone(), c.ca.clone())?.client()
}

/// `trust status`: some role needs the admin's attention.
const EXIT_ATTENTION: u8 = 3;

fn emit<T: Serialize>(json: bool, value: &T, human: impl FnOnce(&T) -> String) -> Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        print!("{}", human(value));
    }
    Ok(ExitCode::SUCCESS)
}

fn real_main(cli: Cli) -> Result<ExitCode> {
    let json = cli.json;
    match cli.command {
        Command::Agents(AgentsCommand::Token { ttl }) => {
            let t = client(&cli.connection)?.create_enrollment_token(ttl)?;
            emit(json, &t, |t| format!("{}\n(valid until {}, single use)\n", t.token, t.expires_at))
        }
        Command::Agents(AgentsCommand::List) => {
            let agents = client(&cli.connection)?.agents()?;
            let now = agents::now();
            emit(json, &agents, |agents| {
                let rows: Vec<Vec<String>> = agents
                    .iter()
                    .map(|a| {
                        vec![
                            a.id.to_string(),
                            a.hostname.clone(),
                            if a.online { "online".into() } else { "offline".into() },
                            format!("{} {}", a.os, a.arch).trim().to_string(),
                            a.last_seen.map_or("never".into(), |t| t.to_string()),
                            agents::summary(a, now),
                            a.packages
                                .iter()
                                .map(|p| format!("{}@{}", p.name, p.version))
                                .collect::<Vec<_>>()
                                .join(" "),
                        ]
                    })
                    .collect();
                output::table(&["ID", "HOSTNAME", "STATUS", "PLATFORM", "LAST SEEN", "HOST", "PACKAGES"], &rows)
            })
        }
        Command::Agents(AgentsCommand::Show { agent }) => {
            let all = client(&cli.connection)?.agents()?;
            let found = agents::find(&all, &agent)?;
            emit(json, found, |a| agents::details(a, agents::now()))
        }
        Command::Agents(AgentsCommand::Tag { agent, tags, remove }) => {
            let request = if remove {
                flotte_protocol::api::TagRequest { add: vec![], remove: tags }
            } else {
                flotte_protocol::api::TagRequest { add: tags, remove: vec![] }
            };
            let view = client(&cli.connection)?.change_tags(&agent, &request)?;
            emit(json, &view, |v| format!("{} ({}): {}\n", v.hostname, v.agent, v.tags.join(" ")))
        }
        Command::Keys(KeysCommand::Generate { out }) => {
            let (key, public) = keys::generate(&out)?;
            let entry = trust::entry(&key.public_key());
            emit(json, &serde_json::json!({"keyid": entry.keyid, "secret": out, "public": public}), |_| {
                format!(
                    "wrote {} (secret, keep it offline) and {}\nTUF key id {}\n",
                    out.display(),
                    public.display(),
                    entry.keyid
                )
            })
        }
        Command::Trust(TrustCommand::Init { dir, root_keys, threshold }) => {
            let done = trust::init(&client(&cli.connection)?, &dir, root_keys, threshold)?;
            emit(json, &done, |d| {
                format!(
                    "root v1 ({threshold} of {root_keys} root keys) and targets v1 uploaded\n\
                     root keys: {}\ntargets key: {}\nroot: {} (sha256 {})\n\
                     next: give {} to agents (`flotte-agent enroll --trust-root`); move the keys offline\n",
                    d.root_keys.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
                    d.targets_key.display(),
                    d.root.display(),
                    d.root_sha256,
                    d.root.display(),
                )
            })
        }
        Command::Trust(TrustCommand::Rotate { root_keys, threshold, targets_key, sign_with, new_online_keys }) => {
            let root_keys = root_keys.iter().map(|p| keys::load_public(p)).collect::<Result<Vec<_>>>()?;
            let targets_key = targets_key.as_deref().map(keys::load_public).transpose()?;
            let sign_with = sign_with.iter().map(|p| keys::load_secret(p)).collect::<Result<Vec<_>>>()?;
            let rotation =
                trust::Rotation { root_keys: &root_keys, threshold, targets: targets_key.as_ref(), new_online_keys };
            let view = trust::rotate(&client(&cli.connection)?, rotation, &sign_with)?;
            emit(json, &view, |v| {
                let online = if new_online_keys { ", the controller signs with its new online keys" } else { "" };
                format!("root v{} uploaded{online}\n", v.version)
            })
        }
        Command::Trust(TrustCommand::Status) => {
            let roles = client(&cli.connection)?.tuf_status()?;
            let now = flotte_protocol::Timestamp::from_system_time(std::time::SystemTime::now());
            emit(json, &roles, |roles| trust::status_table(roles, now))?;
            let attention = roles.iter().any(|r| r.warning.is_some());
            Ok(if attention { ExitCode::from(EXIT_ATTENTION) } else { ExitCode::SUCCESS })
        }
        Command::Trust(TrustCommand::Resign { role, key }) => {
            let secret = keys::load_secret(&key)?;
            let view = trust::resign(&client(&cli.connection)?, &role, &secret)?;
            emit(json, &view, |v| format!("{role} v{} signed, valid for another year\n", v.version))
        }
        Command::Trust(TrustCommand::Delegate { role, paths, keys: key_files, threshold, targets_key }) => {
            let role_keys = key_files.iter().map(|p| keys::load_public(p)).collect::<Result<Vec<_>>>()?;
            let targets_key = keys::load_secret(&targets_key)?;
            let view = trust::delegate(&client(&cli.connection)?, &targets_key, &role, &paths, &role_keys, threshold)?;
            emit(json, &view, |v| format!("targets v{} delegates {} to {role}\n", v.version, paths.join(" ")))
        }
        Command::Package(PackageCommand::Publish { file, name, version, key, role, os, arch, spec }) => {
            let spec = spec.to_spec()?;
            let secret = keys::load_secret(&key)?;
            let platform = flotte_protocol::tuf::release::Platform { os, arch };
            let client = client(&cli.connection)?;
            let release = package::publish_as(&client, &secret, &role, &file, &name, &version, &spec, &platform)?;
            emit(json, &release, |r| {
                format!(
                    "published {}@{} ({}, sha256 {}) signed by {}\n",
                    r.name,
                    r.version,
                    output::size(r.size),
                    r.sha256,
                    r.signed_by
                )
            })
        }
        Command::Package(PackageCommand::AllowRollback { name, version, up_to, key, role }) => {
            let secret = keys::load_secret(&key)?;
            let client = client(&cli.connection)?;
            let view = trust::authorise_rollback(&client, &secret, &role, &name, &version, &up_to)?;
            emit(json, &view, |v| {
                format!("{role} v{}: {name}@{version} may now replace versions up to {up_to}\n", v.version)
            })
        }
        Command::Package(PackageCommand::List) => {
            let releases = client(&cli.connection)?.releases()?;
            emit(json, &releases, |rs| {
                let rows: Vec<_> = rs
                    .iter()
                    .map(|r| {
                        vec![
                            format!("{}@{}", r.name, r.version),
                            output::size(r.size),
                            r.sha256.to_string()[..16].to_string(),
                            r.published_at.to_string(),
                        ]
                    })
                    .collect();
                output::table(&["RELEASE", "SIZE", "SHA256", "PUBLISHED"], &rows)
            })
        }
        Command::Deploy { release, to } => {
            let (name, version) =
                release.split_once('@').context("release must be written NAME@VERSION, e.g. app@1.2.0")?;
            let target = rollout::target(&to);
            let d = client(&cli.connection)?.deploy(&DeployRequest {
                name: name.into(),
                version: version.into(),
                target,
            })?;
            emit(json, &d, |d| {
                format!(
                    "deployment {} of {}@{} to {} agents\nfollow it with: flottectl status\n",
                    d.id, d.name, d.version, d.assignments
                )
            })
        }
        Command::Status => {
            let assignments = client(&cli.connection)?.assignments()?;
            emit(json, &assignments, |all| {
                let rows: Vec<_> = all
                    .iter()
                    .map(|a| {
                        use flotte_protocol::messages::InstallState;
                        let detail = match &a.state {
                            Some(InstallState::Failed { message, .. }) => message.clone(),
                            Some(InstallState::WaitingForWindow { until }) => format!("installs at {until}"),
                            Some(InstallState::Deferred { until, .. }) => format!("deferred until {until}"),
                            _ => String::new(),
                        };
                        vec![
                            a.deployment.to_string(),
                            a.hostname.clone(),
                            format!("{}@{}", a.name, a.version),
                            a.state.as_ref().map_or("assigned", |s| s.name()).to_string(),
                            a.active_version.clone().unwrap_or_else(|| "-".into()),
                            a.updated_at.to_string(),
                            detail,
                        ]
                    })
                    .collect();
                output::table(&["DEPLOYMENT", "AGENT", "RELEASE", "STATE", "ACTIVE", "UPDATED", "DETAIL"], &rows)
            })
        }
        Command::Rollout(command) => rollout_command(&cli.connection, json, command),
        Command::Lab { agents, unhealthy, scenario, waves, soak, keep, timeout } => {
            if agents == 0 {
                bail!("--agents must be at least 1");
            }
            if unhealthy > agents {
                bail!("--unhealthy must be at most --agents ({agents})");
            }
            let ok = lab::run(&LabOptions { agents, unhealthy, scenario, waves, soak, keep, timeout })?;
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}

fn rollout_command(connection: &Connection, json: bool, command: RolloutCommand) -> Result<ExitCode> {
    let client = client(connection)?;
    let view = match command {
        RolloutCommand::Create(args) => client.create_rollout(&args.request()?)?,
        RolloutCommand::List => return emit(json, &client.rollouts()?, |all| rollout::table(all)),
        RolloutCommand::Show { id } => client.rollout(id)?,
        RolloutCommand::Pause { id } => client.rollout_command(id, "pause")?,
        RolloutCommand::Resume { id } => client.rollout_command(id, "resume")?,
        RolloutCommand::Approve { id } => client.rollout_command(id, "approve")?,
        RolloutCommand::Abort { id } => client.rollout_command(id, "abort")?,
        RolloutCommand::Wait { id, timeout } => {
            let code = rollout::wait(&client, id, timeout, |r| {
                if json {
                    println!("{}", serde_json::to_string(r).unwrap_or_default());
                } else {
                    print!("{}", rollout::details(r));
                }
            })?;
            return Ok(ExitCode::from(code));
        }
        RolloutCommand::Watch { id } => return Ok(ExitCode::from(rollout::watch(&client, id)?)),
        RolloutCommand::Rollback(args) => {
            let view = client.rollback(args.id, &args.request())?;
            return emit(json, &view, rollout::rollback_details);
        }
    };
    emit(json, &view, rollout::details)
}
