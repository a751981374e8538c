//! `flotte`: the end-user CLI. It talks to the local agent over its Unix
//! socket: see what software is available and installed, install or remove
//! it, and see what is going on.
//!
//! Exit codes: 0 success; 1 the install or removal failed; 2 usage error;
//! 3 no such software; 4 not allowed by the pull policy; 5 not now
//! (something else is under way for that package, or no deferral is left);
//! 6 the agent cannot be reached; 7 gave up waiting (`--timeout`).

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use flotte_agent::config::DEFAULT_SOCKET;
use flotte_agent::local::wire::{self, Answer, ErrorCode, JobView, MAX_FRAME, Request};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const EXIT_FAILED: u8 = 1;
const EXIT_NOT_FOUND: u8 = 3;
const EXIT_FORBIDDEN: u8 = 4;
const EXIT_BUSY: u8 = 5;
const EXIT_UNREACHABLE: u8 = 6;
const EXIT_TIMEOUT: u8 = 7;

/// How often `install` asks how the install is going.
const POLL: Duration = Duration::from_millis(200);

#[derive(Debug, Parser)]
#[command(name = "flotte", version, about = "Install and remove software your administrator offers to this computer.")]
struct Cli {
    /// The agent's socket.
    #[arg(long, global = true, env = "FLOTTE_SOCKET", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Print JSON for scripts instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Software available to install, and software installed.
    List,
    /// Install the available release of NAME and wait until it is done.
    Install {
        name: String,
        /// Start the install and return at once.
        #[arg(long)]
        no_wait: bool,
        /// Give up waiting after this long (the install goes on).
        #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Uninstall NAME (only software installed with `flotte install`).
    Remove { name: String },
    /// Installs under way or recent, and required installs coming up.
    Status,
    /// Postpone the required install of NAME (as often as the administrator allows).
    Defer { name: String },
}

/// A failure with its exit code.
struct Exit(u8, String);

/// A reader that goes away (`flotte list | head`) ends the process quietly,
/// as with other Unix tools, instead of a panic on the next write.
#[allow(unsafe_code)]
fn die_quietly_on_broken_pipe() {
    // SAFETY: restores the default disposition, before any other thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

fn main() -> ExitCode {
    die_quietly_on_broken_pipe();
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Exit(code, message)) => {
            if !message.is_empty() {
                eprintln!("flotte: {message}");
            }
            ExitCode::from(code)
        }
    }
}

fn run(cli: &Cli) -> Result<(), Exit> {
    match &cli.command {
        Command::List => {
            let Answer::List(listing) = ask(cli, &Request::List)? else { return unexpected() };
            if cli.json {
                return print_json(&listing);
            }
            println!("Available:");
            if listing.available.is_empty() {
                println!("  (nothing)");
            }
            for a in &listing.available {
                println!("  {} {}", a.name, a.version);
                if let Some(deadline) = &a.deadline {
                    println!(
                        "      required from {deadline}; installed automatically at {}",
                        a.install_due.as_deref().unwrap_or(deadline)
                    );
                }
                for line in a.notes.as_deref().unwrap_or("").lines() {
                    println!("      {line}");
                }
            }
            println!("Installed:");
            if listing.installed.is_empty() {
                println!("  (nothing)");
            }
            for i in &listing.installed {
                let how =
                    if i.pulled { "installed by you (flotte remove works)" } else { "managed by your administrator" };
                println!("  {} {}  {how}", i.name, i.version);
            }
            Ok(())
        }
        Command::Status => {
            let Answer::Status(status) = ask(cli, &Request::Status)? else { return unexpected() };
            if cli.json {
                return print_json(&status);
            }
            println!("agent: {}", if status.connected { "connected to its controller" } else { "offline" });
            for n in &status.notices {
                println!("notice: {n}");
            }
            if status.jobs.is_empty() {
                println!("no installs under way or in the last day");
            }
            for j in &status.jobs {
                println!("{}", describe(j));
            }
            Ok(())
        }
        Command::Install { name, no_wait, timeout } => {
            let answer = ask(cli, &Request::Install { name: name.clone() })?;
            let Answer::Started(job) = answer else { return unexpected() };
            if !cli.json {
                eprintln!("installing {} {} (install {})", job.name, job.version, job.assignment);
            }
            let job = if *no_wait { job } else { follow(cli, job, *timeout)? };
            if cli.json {
                print_json(&job)?;
            } else if job.finished {
                println!("{}", describe(&job));
            }
            if job.finished && !job.succeeded { Err(Exit(EXIT_FAILED, String::new())) } else { Ok(()) }
        }
        Command::Defer { name } => {
            let Answer::Deferred { name, until, remaining } = ask(cli, &Request::Defer { name: name.clone() })? else {
                return unexpected();
            };
            if cli.json {
                return print_json(&serde_json::json!({ "deferred": name, "until": until, "remaining": remaining }));
            }
            println!("{name} will be installed at {until}; {remaining} deferral(s) left");
            Ok(())
        }
        Command::Remove { name } => {
            let Answer::Removed { name, version } = ask(cli, &Request::Remove { name: name.clone() })? else {
                return unexpected();
            };
            if cli.json {
                return print_json(&serde_json::json!({ "removed": name, "version": version }));
            }
            match version {
                Some(v) => println!("removed {name} {v}"),
                None => println!("{name} was not installed; nothing to remove"),
            }
            Ok(())
        }
    }
}

/// Polls the install until it finishes or `timeout` passes, printing each
/// new state on a terminal.
fn follow(cli: &Cli, mut job: JobView, timeout: Duration) -> Result<JobView, Exit> {
    let started = Instant::now();
    let mut shown = String::new();
    while !job.finished {
        if started.elapsed() > timeout {
            return Err(Exit(
                EXIT_TIMEOUT,
                format!(
                    "gave up waiting after {}; the install goes on (`flotte status`)",
                    humantime::format_duration(timeout)
                ),
            ));
        }
        if !cli.json && job.state != shown {
            eprintln!("  {}", job.state);
            shown = job.state.clone();
        }
        std::thread::sleep(POLL);
        let Answer::Job(next) = ask(cli, &Request::Job { assignment: job.assignment })? else { return unexpected() };
        job = next;
    }
    Ok(job)
}

fn describe(j: &JobView) -> String {
    let mut line = format!("{} {}: {}", j.name, j.version, j.state);
    if let Some(m) = &j.message {
        line.push_str(&format!(" ({})", m.lines().next().unwrap_or("")));
    }
    line
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<(), Exit> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Exit(EXIT_FAILED, e.to_string()))?;
    println!("{text}");
    Ok(())
}

fn unexpected<T>() -> Result<T, Exit> {
    Err(Exit(EXIT_FAILED, "the agent gave an unexpected answer; is it the same version as this flotte?".into()))
}

/// Sends `request` and returns the answer; an error answer becomes its exit.
fn ask(cli: &Cli, request: &Request) -> Result<Answer, Exit> {
    let answer = exchange(cli, request).map_err(|e| {
        Exit(EXIT_UNREACHABLE, format!("cannot talk to the Flotte agent at {}: {e:#}", cli.socket.display()))
    })?;
    match answer {
        Answer::Error { code, message } => {
            let exit = match code {
                ErrorCode::NotFound => EXIT_NOT_FOUND,
                ErrorCode::Forbidden => EXIT_FORBIDDEN,
                ErrorCode::Busy => EXIT_BUSY,
                ErrorCode::BadRequest | ErrorCode::Internal => EXIT_FAILED,
            };
            Err(Exit(exit, message))
        }
        other => Ok(other),
    }
}

fn exchange(cli: &Cli, request: &Request) -> Result<Answer> {
    let mut stream = UnixStream::connect(&cli.socket).context("connect (is flotte-agent running?)")?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    stream.write_all(&wire::encode(request)?)?;
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).context("the agent closed the connection")?;
    let len = wire::decode_len(header, MAX_FRAME)?;
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body)?;
    match serde_json::from_slice(&body) {
        Ok(answer) => Ok(answer),
        Err(e) => bail!("malformed answer: {e}"),
    }
}
