//! The fanout baseline: nginx (Debian package `nginx` or `nginx-light`)
//! serving files over HTTPS (TLS 1.3, a self-signed certificate from
//! rcgen) on a loopback port, and N concurrent `curl` clients each piping
//! the body into `openssl dgst -sha256`.

use super::fanout::digest_of_output;
use anyhow::{Context, Result, bail, ensure};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The command that installs what the baseline needs.
pub const INSTALL: &str = "apt-get install -y nginx-light curl openssl";

/// A running nginx; stopped on drop.
pub struct Nginx {
    child: Child,
    port: u16,
    root: PathBuf,
    cert: PathBuf,
}

/// One baseline fetch by N clients.
pub struct Fetch {
    pub wall: f64,
    /// CPU seconds of nginx (master and workers) during the fetch.
    pub server_cpu: f64,
    /// Largest peak RSS of one nginx worker.
    pub server_peak_kib: u64,
}

fn nginx_binary() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx"].iter().map(PathBuf::from).find(|p| p.is_file())
}

impl Nginx {
    /// Writes a config under `dir/nginx` and starts nginx in the foreground.
    pub fn start(dir: &Path) -> Result<Nginx> {
        let Some(binary) = nginx_binary() else { bail!("nginx is not installed; install it with: {INSTALL}") };
        let prefix = dir.join("nginx");
        let root = prefix.join("www");
        std::fs::create_dir_all(&root)?;
        let key = rcgen::KeyPair::generate()?;
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])?.self_signed(&key)?;
        let (cert_path, key_path) = (prefix.join("cert.pem"), prefix.join("key.pem"));
        std::fs::write(&cert_path, cert.pem())?;
        std::fs::write(&key_path, key.serialize_pem())?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let p = prefix.display();
        let conf = format!(
            "daemon off;\nworker_processes auto;\npid {p}/nginx.pid;\nerror_log {p}/error.log warn;\n\
             events {{ worker_connections 8192; }}\n\
             http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  keepalive_timeout 5;\n\
               client_body_temp_path {p}/tmp-body;\n  proxy_temp_path {p}/tmp-proxy;\n\
               fastcgi_temp_path {p}/tmp-fcgi;\n  uwsgi_temp_path {p}/tmp-uwsgi;\n  scgi_temp_path {p}/tmp-scgi;\n\
               server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_protocols TLSv1.3;\n\
                 ssl_certificate {cert};\n    ssl_certificate_key {key};\n    root {root};\n  }}\n}}\n",
            cert = cert_path.display(),
            key = key_path.display(),
            root = root.display(),
        );
        let conf_path = prefix.join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        let child = Command::new(&binary)
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let nginx = Nginx { child, port, root, cert: cert_path };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            ensure!(started.elapsed() < Duration::from_secs(10), "nginx did not listen on {port}; see {p}/error.log");
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(nginx)
    }

    /// Serves `file` to `clients` concurrent `curl | openssl dgst -sha256`
    /// pipelines and checks every digest.
    pub fn fetch_all(&self, file: &Path, clients: usize) -> Result<Fetch> {
        let name = file.file_name().context("file without a name")?;
        let served = self.root.join(name);
        if !served.exists() {
            std::fs::hard_link(file, &served).or_else(|_| std::fs::copy(file, &served).map(drop))?;
        }
        let expected = flotte_agent::download::hash_file(file)?.0.to_hex();
        // Warm the page cache, as the controller's content is after publishing.
        let _ = std::fs::read(file)?;
        let url = format!("https://127.0.0.1:{}/{}", self.port, name.to_string_lossy());
        let pids = self.pids();
        let cpu_before: f64 =
            pids.iter().filter_map(|p| crate::footprint::sample(*p).ok()).map(|s| s.cpu_seconds()).sum();
        for pid in &pids {
            let _ = super::site::reset_peak_rss(*pid);
        }
        let started = Instant::now();
        let mut children = Vec::with_capacity(clients);
        for _ in 0..clients {
            let script =
                format!("curl -sS --fail --cacert '{}' '{url}' | openssl dgst -sha256 -r", self.cert.display());
            children.push(Command::new("sh").arg("-c").arg(script).stdout(Stdio::piped()).spawn()?);
        }
        for child in children {
            let out = child.wait_with_output()?;
            ensure!(out.status.success(), "a baseline client failed");
            let got = digest_of_output(&out.stdout)?;
            ensure!(got == expected, "a baseline client got {got}, expected {expected}");
        }
        let wall = started.elapsed().as_secs_f64();
        let samples: Vec<_> = pids.iter().filter_map(|p| crate::footprint::sample(*p).ok()).collect();
        let cpu_after: f64 = samples.iter().map(|s| s.cpu_seconds()).sum();
        let peak = samples.iter().map(|s| s.hwm_kib).max().unwrap_or(0);
        Ok(Fetch { wall, server_cpu: cpu_after - cpu_before, server_peak_kib: peak })
    }

    /// The master and its worker processes.
    fn pids(&self) -> Vec<u32> {
        let master = self.child.id();
        let mut pids = vec![master];
        let Ok(entries) = std::fs::read_dir("/proc") else { return pids };
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
            let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
            if ppid == Some(master) {
                pids.push(pid);
            }
        }
        pids
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers too (SIGKILL would orphan them).
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) on a child we own; no memory is involved.
            #[allow(unsafe_code)]
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let _ = self.child.wait();
    }
}
