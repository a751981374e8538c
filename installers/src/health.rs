//! Generic health checks a release declares ("smoke tests"), run after
//! activation and repeatedly during the probation period.
//!
//! Guarantees of [`HealthCheck::run`]:
//! - it blocks for a bounded time: the command's own timeout, or
//!   [`NETWORK_TIMEOUT`] for the network checks (the HTTP check bounds the
//!   whole exchange, not each read);
//! - it never panics and never returns an error: anything that goes wrong
//!   is a failing [`CheckOutcome`] whose `detail` says why;
//! - network checks only ever talk to the loopback interface: a URL whose
//!   host is not `localhost` or a loopback address is refused without any
//!   connection attempt, and `localhost` is not resolved (it means
//!   127.0.0.1, then ::1), so `/etc/hosts` cannot redirect it;
//! - commands run like hooks (see [`crate::process`]): clean environment,
//!   working directory `/`, stdin `/dev/null`, process group killed on
//!   timeout.
//!
//! The declaration's wire format lives in `protocol`; this is the plain
//! Rust type the agent converts it into.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::error::InstallError;
use crate::process::{self, clean_command};

/// Connect timeout of the TCP check, and the time the HTTP check gets for
/// the whole exchange.
pub const NETWORK_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest HTTP response head read before giving up on finding the status
/// line.
const MAX_STATUS_LINE: usize = 8 * 1024;

/// The result of one health check run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    /// The check passed.
    pub passed: bool,
    /// What was observed, for the report (exit status and output tail, the
    /// HTTP status line, the connect error...).
    pub detail: String,
}

impl CheckOutcome {
    /// A passing outcome.
    pub fn pass(detail: impl Into<String>) -> Self {
        CheckOutcome { passed: true, detail: detail.into() }
    }

    /// A failing outcome.
    pub fn fail(detail: impl Into<String>) -> Self {
        CheckOutcome { passed: false, detail: detail.into() }
    }
}

/// One declared health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthCheck {
    /// Run `argv` (no shell; `argv[0]` is looked up in the clean `PATH`);
    /// passes if it exits with `expect_exit` within `timeout`.
    Command {
        /// Program and arguments.
        argv: Vec<String>,
        /// The exit code that means healthy.
        expect_exit: i32,
        /// After this the process group is killed and the check fails.
        timeout: Duration,
    },
    /// Passes if a TCP connection to `port` on localhost is accepted.
    TcpPort {
        /// The local port.
        port: u16,
    },
    /// Passes if `path` exists (following symlinks; a dangling link fails).
    FileExists {
        /// An absolute path.
        path: PathBuf,
    },
    /// Passes if a plain HTTP/1.1 `GET` of `url` answers 2xx. Only
    /// `http://` URLs on `localhost` or a loopback address; redirects are
    /// not followed (a 3xx fails).
    HttpGet {
        /// E.g. `http://127.0.0.1:8080/healthz`.
        url: String,
    },
}

impl HealthCheck {
    /// A [`HealthCheck::Command`].
    pub fn command(argv: impl IntoIterator<Item = impl Into<String>>, expect_exit: i32, timeout: Duration) -> Self {
        HealthCheck::Command { argv: argv.into_iter().map(Into::into).collect(), expect_exit, timeout }
    }

    /// A [`HealthCheck::TcpPort`].
    pub fn tcp_port(port: u16) -> Self {
        HealthCheck::TcpPort { port }
    }

    /// A [`HealthCheck::FileExists`].
    pub fn file_exists(path: impl Into<PathBuf>) -> Self {
        HealthCheck::FileExists { path: path.into() }
    }

    /// A [`HealthCheck::HttpGet`].
    pub fn http_get(url: impl Into<String>) -> Self {
        HealthCheck::HttpGet { url: url.into() }
    }

    /// Checks the declaration without running it, so the agent can refuse a
    /// release with an unusable check before installing it. [`Self::run`]
    /// applies the same rules.
    pub fn validate(&self) -> Result<(), InstallError> {
        let invalid = |reason: String| Err(InstallError::InvalidHealthCheck { reason });
        match self {
            HealthCheck::Command { argv, timeout, .. } => {
                if argv.first().is_none_or(|p| p.is_empty()) {
                    return invalid("command: empty argv".into());
                }
                if argv.iter().any(|a| a.contains('\0')) {
                    return invalid("command: NUL byte in argv".into());
                }
                if timeout.is_zero() {
                    return invalid("command: zero timeout".into());
                }
                Ok(())
            }
            HealthCheck::TcpPort { port: 0 } => invalid("tcp: port 0".into()),
            HealthCheck::TcpPort { .. } => Ok(()),
            HealthCheck::FileExists { path } if !path.is_absolute() => {
                invalid(format!("file: {} is not an absolute path", path.display()))
            }
            HealthCheck::FileExists { .. } => Ok(()),
            HealthCheck::HttpGet { url } => LoopbackUrl::parse(url).map(|_| ()).or_else(invalid),
        }
    }

    /// Runs the check once (blocking; see the module doc for the bounds).
    pub fn run(&self) -> CheckOutcome {
        if let Err(e) = self.validate() {
            return CheckOutcome::fail(format!("refused: {e}"));
        }
        match self {
            HealthCheck::Command { argv, expect_exit, timeout } => run_command(argv, *expect_exit, *timeout),
            HealthCheck::TcpPort { port } => match connect_localhost(*port) {
                Ok((_, addr)) => CheckOutcome::pass(format!("{addr} accepted a connection")),
                Err(detail) => CheckOutcome::fail(detail),
            },
            HealthCheck::FileExists { path } => match std::fs::metadata(path) {
                Ok(_) => CheckOutcome::pass(format!("{} exists", path.display())),
                Err(e) => CheckOutcome::fail(format!("{}: {e}", path.display())),
            },
            HealthCheck::HttpGet { url } => match LoopbackUrl::parse(url) {
                Ok(target) => http_get(&target),
                Err(reason) => CheckOutcome::fail(format!("refused: {reason}")),
            },
        }
    }
}

fn run_command(argv: &[String], expect_exit: i32, timeout: Duration) -> CheckOutcome {
    let mut cmd = clean_command(&argv[0]);
    cmd.args(&argv[1..]).current_dir("/");
    match process::run(&mut cmd, timeout, 0) {
        Ok(done) => {
            let out = done.output;
            let detail = if out.tail.trim().is_empty() {
                format!("{} {out}", argv[0])
            } else {
                format!("{} {out}; output tail:\n{}", argv[0], out.tail)
            };
            let passed = !out.timed_out && out.exit == Some(expect_exit);
            CheckOutcome { passed, detail }
        }
        Err(e) => CheckOutcome::fail(format!("cannot run {}: {e}", argv[0])),
    }
}

/// Connects to `port` on 127.0.0.1, then on ::1.
fn connect_localhost(port: u16) -> Result<(TcpStream, SocketAddr), String> {
    connect_any(&[IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)], port, NETWORK_TIMEOUT)
}

fn connect_any(ips: &[IpAddr], port: u16, timeout: Duration) -> Result<(TcpStream, SocketAddr), String> {
    let mut errors = Vec::new();
    for ip in ips {
        let addr = SocketAddr::new(*ip, port);
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => return Ok((stream, addr)),
            Err(e) => errors.push(format!("{addr}: {e}")),
        }
    }
    Err(errors.join("; "))
}

/// An `http://` URL whose host is loopback.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LoopbackUrl {
    /// Addresses to try, in order.
    ips: Vec<IpAddr>,
    port: u16,
    /// The `Host` header value, as written in the URL.
    host_header: String,
    /// Path and query, starting with `/`.
    target: String,
}

impl LoopbackUrl {
    fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("http: {url:?} is not an http:// URL (https is not supported)"))?;
        if url.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(format!("http: {url:?} contains spaces or control characters"));
        }
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        let path = path.split('#').next().unwrap_or("");
        let target = if path.starts_with('/') { path.to_owned() } else { format!("/{path}") };
        if authority.contains('@') {
            return Err(format!("http: {url:?} has user information"));
        }
        let (host, port) = split_host_port(authority).ok_or_else(|| format!("http: bad host or port in {url:?}"))?;
        let ips = if host.eq_ignore_ascii_case("localhost") {
            vec![IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)]
        } else {
            match host.parse::<IpAddr>() {
                Ok(ip) if ip.is_loopback() => vec![ip],
                _ => return Err(format!("http: host {host:?} is not loopback; only localhost is checked")),
            }
        };
        Ok(LoopbackUrl { ips, port, host_header: authority.to_owned(), target })
    }
}

/// `host[:port]` or `[v6][:port]`; port defaults to 80.
fn split_host_port(authority: &str) -> Option<(&str, u16)> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => 80,
        Some(p) => p.parse().ok().filter(|&p| p != 0)?,
    };
    (!host.is_empty()).then_some((host, port))
}

fn http_get(url: &LoopbackUrl) -> CheckOutcome {
    let deadline = Instant::now() + NETWORK_TIMEOUT;
    let (mut stream, addr) = match connect_any(&url.ips, url.port, NETWORK_TIMEOUT) {
        Ok(connected) => connected,
        Err(detail) => return CheckOutcome::fail(detail),
    };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: flotte-health\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        url.target, url.host_header
    );
    let remaining = || deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    if let Err(e) = stream.set_write_timeout(Some(remaining())).and_then(|()| stream.write_all(request.as_bytes())) {
        return CheckOutcome::fail(format!("{addr}: sending the request: {e}"));
    }
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    let line = loop {
        if let Some(end) = head.windows(2).position(|w| w == b"\r\n") {
            break String::from_utf8_lossy(&head[..end]).into_owned();
        }
        if head.len() > MAX_STATUS_LINE {
            return CheckOutcome::fail(format!("{addr}: no status line in the first {MAX_STATUS_LINE} bytes"));
        }
        if Instant::now() >= deadline {
            return CheckOutcome::fail(format!("{addr}: no answer within {NETWORK_TIMEOUT:?}"));
        }
        if let Err(e) = stream.set_read_timeout(Some(remaining())) {
            return CheckOutcome::fail(format!("{addr}: {e}"));
        }
        match stream.read(&mut buf) {
            Ok(0) => return CheckOutcome::fail(format!("{addr}: connection closed before a status line")),
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return CheckOutcome::fail(format!("{addr}: reading the answer: {e}")),
        }
    };
    let status = line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok())
        .filter(|_| line.as_bytes().get(8) == Some(&b' '));
    match status {
        Some(code) if (200..300).contains(&code) => CheckOutcome::pass(format!("GET {} → {line}", url.target)),
        Some(_) => CheckOutcome::fail(format!("GET {} → {line}", url.target)),
        None => CheckOutcome::fail(format!("{addr}: not an HTTP/1.x status line: {line:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::net::TcpListener;
    use std::sync::mpsc;
    use std::thread;

    /// Serves one connection with `response` and sends back the request head.
    fn one_shot_http(response: &'static str) -> (u16, mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            (&stream).write_all(response.as_bytes()).unwrap();
            let _ = tx.send(head);
        });
        (port, rx)
    }

    #[test]
    fn a_command_passes_on_the_expected_exit_code_only() {
        let ok = HealthCheck::command(["sh", "-c", "echo fine; exit 3"], 3, Duration::from_secs(30)).run();
        assert!(ok.passed, "{ok:?}");
        assert!(ok.detail.contains("exited with status 3") && ok.detail.contains("fine"), "{}", ok.detail);

        let bad = HealthCheck::command(["sh", "-c", "echo broken >&2; exit 1"], 0, Duration::from_secs(30)).run();
        assert!(!bad.passed);
        assert!(bad.detail.contains("status 1") && bad.detail.contains("broken"), "{}", bad.detail);
    }

    #[test]
    fn a_command_that_hangs_fails_at_its_timeout() {
        let hung = HealthCheck::command(["sleep", "600"], 0, Duration::from_millis(200)).run();
        assert!(!hung.passed);
        assert!(hung.detail.contains("timed out"), "{}", hung.detail);
    }

    #[test]
    fn a_command_that_cannot_start_fails() {
        let missing = HealthCheck::command(["/nonexistent/probe"], 0, Duration::from_secs(1)).run();
        assert!(!missing.passed);
        assert!(missing.detail.contains("cannot run"), "{}", missing.detail);
        assert!(!HealthCheck::command(Vec::<String>::new(), 0, Duration::from_secs(1)).run().passed);
    }

    #[test]
    fn a_command_expecting_success_where_the_exit_code_is_zero_passes() {
        assert!(HealthCheck::command(["true"], 0, Duration::from_secs(30)).run().passed);
        assert!(!HealthCheck::command(["false"], 0, Duration::from_secs(30)).run().passed);
    }

    #[test]
    fn a_listening_tcp_port_passes_and_a_closed_one_fails() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = HealthCheck::tcp_port(port).run();
        assert!(open.passed, "{open:?}");

        drop(listener);
        let closed = HealthCheck::tcp_port(port).run();
        assert!(!closed.passed);
        assert!(closed.detail.contains(&format!("127.0.0.1:{port}")), "{}", closed.detail);
        assert!(!HealthCheck::tcp_port(0).run().passed);
    }

    #[test]
    fn an_existing_file_passes_and_a_missing_or_relative_one_fails() {
        let tmp = tempfile::tempdir().unwrap();
        let present = tmp.path().join("ready");
        std::fs::write(&present, b"").unwrap();
        assert!(HealthCheck::file_exists(&present).run().passed);

        let dangling = tmp.path().join("dangling");
        std::os::unix::fs::symlink(tmp.path().join("nowhere"), &dangling).unwrap();
        assert!(!HealthCheck::file_exists(&dangling).run().passed);
        assert!(!HealthCheck::file_exists(tmp.path().join("missing")).run().passed);

        let relative = HealthCheck::file_exists("ready");
        assert!(matches!(relative.validate(), Err(InstallError::InvalidHealthCheck { .. })));
        assert!(!relative.run().passed);
    }

    #[test]
    fn http_get_passes_on_2xx_and_sends_a_proper_request() {
        let (port, request) = one_shot_http("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
        let outcome = HealthCheck::http_get(format!("http://127.0.0.1:{port}/healthz?deep=1")).run();
        assert!(outcome.passed, "{outcome:?}");
        assert!(outcome.detail.contains("204"), "{}", outcome.detail);
        let head = request.recv().unwrap();
        assert!(head.starts_with("GET /healthz?deep=1 HTTP/1.1\r\n"), "{head}");
        assert!(head.contains(&format!("Host: 127.0.0.1:{port}\r\n")), "{head}");
    }

    #[test]
    fn http_get_fails_on_an_error_status_and_on_garbage() {
        let (port, _rx) = one_shot_http("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
        let outcome = HealthCheck::http_get(format!("http://localhost:{port}/")).run();
        assert!(!outcome.passed);
        assert!(outcome.detail.contains("503 Service Unavailable"), "{}", outcome.detail);

        let (port, _rx) = one_shot_http("SSH-2.0-OpenSSH\r\n");
        assert!(!HealthCheck::http_get(format!("http://127.0.0.1:{port}")).run().passed);
    }

    #[test]
    fn http_get_fails_when_nothing_listens() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        assert!(!HealthCheck::http_get(format!("http://127.0.0.1:{port}/")).run().passed);
    }

    #[test]
    fn http_get_refuses_hosts_that_are_not_loopback() {
        for url in [
            "http://192.0.2.1/health",
            "http://example.com/",
            "http://127.0.0.1.example.com/",
            "http://user@127.0.0.1/",
            "https://127.0.0.1/",
            "http://[2001:db8::1]:80/",
            "http://127.0.0.1/a b",
            "ftp://localhost/",
        ] {
            let check = HealthCheck::http_get(url);
            assert!(matches!(check.validate(), Err(InstallError::InvalidHealthCheck { .. })), "{url}");
            let outcome = check.run();
            assert!(!outcome.passed, "{url}");
            assert!(outcome.detail.starts_with("refused"), "{url}: {}", outcome.detail);
        }
    }

    #[test]
    fn loopback_urls_are_parsed_without_resolving_names() {
        let u = LoopbackUrl::parse("http://[::1]:8080").unwrap();
        assert_eq!((u.ips, u.port, u.target.as_str()), (vec![IpAddr::V6(Ipv6Addr::LOCALHOST)], 8080, "/"));
        let u = LoopbackUrl::parse("http://LOCALHOST/x#frag").unwrap();
        assert_eq!((u.port, u.target.as_str(), u.ips.len()), (80, "/x", 2));
        let u = LoopbackUrl::parse("http://127.0.0.2:1/?q").unwrap();
        assert_eq!(u.target, "/?q");
        assert!(LoopbackUrl::parse("http://127.0.0.1:0/").is_err());
        assert!(LoopbackUrl::parse("http://:80/").is_err());
    }
}
