//! The local socket listener.
//!
//! Guarantees:
//! - The socket's directory is created 0755 if missing; a stale socket
//!   left by a previous run is replaced, but any other file at the path is
//!   refused rather than deleted.
//! - The socket is 0666 once bound: reaching it is not a permission;
//!   [`super::policy`] decides per request from the peer's credentials
//!   (`SO_PEERCRED`), which a caller cannot forge.
//! - A caller has [`REQUEST_TIMEOUT`] to send its request, which may be at
//!   most [`MAX_REQUEST`] bytes; at most [`MAX_CONNECTIONS`] are served at
//!   once, so local users cannot tie the agent up.
//! - Allowed requests go to the agent's event loop as [`LocalCall`]s; the
//!   listener itself changes nothing.

use super::peer;
use super::policy::{Caller, PullPolicy};
use super::wire::{self, Answer, ErrorCode, MAX_REQUEST, Request};
use crate::error::{AgentError, Result};
use std::os::unix::fs::{DirBuilderExt as _, FileTypeExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, mpsc, oneshot};

/// How long a caller may take to send its request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 16;

/// An allowed request on its way to the event loop, with where to answer.
#[derive(Debug)]
pub struct LocalCall {
    pub caller: Caller,
    pub request: Request,
    pub reply: oneshot::Sender<Answer>,
}

/// The bound socket; [`Listener::serve`] runs it.
pub struct Listener {
    listener: UnixListener,
    path: PathBuf,
}

impl Listener {
    /// Binds `path` as described in the module doc.
    pub fn bind(path: &Path) -> Result<Listener> {
        if let Some(dir) = path.parent()
            && !dir.exists()
        {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .map_err(AgentError::io("create the socket directory", dir))?;
        }
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => {
                std::fs::remove_file(path).map_err(AgentError::io("remove the stale socket", path))?
            }
            Ok(_) => {
                return Err(AgentError::ConfigValue {
                    key: "pull.socket",
                    reason: format!("{} exists and is not a socket; remove it or choose another path", path.display()),
                });
            }
            Err(_) => {}
        }
        let listener = UnixListener::bind(path).map_err(AgentError::io("bind the local socket", path))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
            .map_err(AgentError::io("set the permissions of", path))?;
        Ok(Listener { listener, path: path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts connections until the receiving side of `calls` is gone.
    pub async fn serve(self, policy: PullPolicy, calls: mpsc::Sender<LocalCall>) {
        let policy = Arc::new(policy);
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let Ok(permit) = Arc::clone(&slots).acquire_owned().await else { return };
            let stream = match self.listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "local socket: accept failed");
                    continue;
                }
            };
            if calls.is_closed() {
                return;
            }
            let (policy, calls) = (Arc::clone(&policy), calls.clone());
            tokio::spawn(async move {
                if let Err(e) = serve_one(stream, &policy, &calls).await {
                    tracing::debug!(error = %e, "local socket: connection ended early");
                }
                drop(permit);
            });
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn serve_one(mut stream: UnixStream, policy: &PullPolicy, calls: &mpsc::Sender<LocalCall>) -> anyhow::Result<()> {
    let uid = stream.peer_cred()?.uid();
    let caller = tokio::task::spawn_blocking(move || peer::caller(uid)).await?;
    let request = match tokio::time::timeout(REQUEST_TIMEOUT, wire::read::<Request>(&mut stream, MAX_REQUEST)).await {
        Err(_) => anyhow::bail!("no request within {REQUEST_TIMEOUT:?}"),
        Ok(Err(wire::WireError::Json(e))) => {
            let answer = Answer::Error { code: ErrorCode::BadRequest, message: format!("bad request: {e}") };
            wire::write(&mut stream, &answer).await?;
            return Ok(());
        }
        Ok(Err(e)) => return Err(e.into()),
        Ok(Ok(request)) => request,
    };
    let answer = match policy.check(&caller, &request) {
        Err(refusal) => {
            tracing::warn!(caller = %caller.describe(), ?request, "local request refused by the pull policy");
            Answer::Error { code: ErrorCode::Forbidden, message: refusal.to_string() }
        }
        Ok(()) => {
            let (reply, answer) = oneshot::channel();
            calls.send(LocalCall { caller, request, reply }).await?;
            answer.await.unwrap_or(Answer::Error { code: ErrorCode::Internal, message: "the agent is stopping".into() })
        }
    };
    wire::write(&mut stream, &answer).await?;
    Ok(())
}
