//! `berth exec [-i] [-t] APP/SERVICE[/SLOT] -- CMD...`: a command in a container through the
//! agent's WebSocket (`api/exec.rs` has the message kinds): stdin (with `-i`), stdout and
//! stderr as the command writes them, a terminal in raw mode with its size followed (with
//! `-t`), and the command's exit code as this process's.

use super::client::Client;
use anyhow::{Context, Result, bail};
use clap::Args;
use std::io::{IsTerminal, Read, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tungstenite::Message;

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// APP/SERVICE, or APP/SERVICE/SLOT for one container (default: the first running one).
    pub target: String,
    /// Keep stdin open and send it to the command.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Give the command a terminal (this terminal, in raw mode, its size followed).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// The command and its arguments (after `--`).
    #[arg(last = true, required = true, value_name = "CMD")]
    pub cmd: Vec<String>,
}

const IN_STDIN: u8 = 0;
const IN_RESIZE: u8 = 1;
const IN_EOF: u8 = 2;
const OUT_STDOUT: u8 = 1;
const OUT_STDERR: u8 = 2;
const OUT_EXIT: u8 = 3;
const OUT_ERROR: u8 = 4;

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The terminal's size (cols, rows) when stdout is one.
fn window_size() -> Option<(u16, u16)> {
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ fills the struct it is given; the fd is this process's stdout.
    let r = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_col > 0 && ws.ws_row > 0).then_some((ws.ws_col, ws.ws_row))
}

/// The terminal's settings, restored when dropped.
struct Raw(Option<nix::sys::termios::Termios>);

impl Raw {
    fn enter() -> Result<Raw> {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        let old = tcgetattr(&stdin).context("reading the terminal's settings")?;
        let mut raw = old.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw).context("putting the terminal in raw mode")?;
        Ok(Raw(Some(old)))
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        if let Some(old) = self.0.take() {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                &old,
            );
        }
    }
}

fn binary(kind: u8, bytes: &[u8]) -> Message {
    let mut m = Vec::with_capacity(bytes.len() + 1);
    m.push(kind);
    m.extend_from_slice(bytes);
    Message::Binary(m.into())
}

/// Runs the command; returns its exit code.
pub fn exec(client: &Client, a: ExecArgs) -> Result<i32> {
    let parts: Vec<&str> = a.target.split('/').collect();
    let (app, service, slot) = match parts.as_slice() {
        [app, svc] => (*app, *svc, None),
        [app, svc, n] => (
            *app,
            *svc,
            Some(n.parse::<u32>().with_context(|| {
                format!("{:?}: the slot is a number (berth ps lists them)", a.target)
            })?),
        ),
        _ => bail!(
            "{:?}: name the container as APP/SERVICE or APP/SERVICE/SLOT",
            a.target
        ),
    };
    let tty = a.tty && std::io::stdin().is_terminal();
    if a.tty && !tty {
        eprintln!("warning: stdin is not a terminal: running without one (-t ignored)");
    }
    let mut path = format!("/v1/apps/{app}/services/{service}/exec?");
    for c in &a.cmd {
        path.push_str(&format!("cmd={}&", encode(c)));
    }
    if let Some(n) = slot {
        path.push_str(&format!("slot={n}&"));
    }
    let size = tty.then(window_size).flatten();
    if tty {
        path.push_str("tty=1&");
        if let Some((c, r)) = size {
            path.push_str(&format!("cols={c}&rows={r}&"));
        }
    }
    let mut ws = client.websocket(path.trim_end_matches(['&', '?']))?;

    // Stdin is read on a thread of its own (a read blocks); without -i the command's input
    // ends at once.
    let (tx, rx) = mpsc::channel::<Option<Vec<u8>>>();
    if a.interactive {
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin();
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = tx.send(None);
                        return;
                    }
                    Ok(n) => {
                        if tx.send(Some(buf[..n].to_vec())).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    } else {
        let _ = tx.send(None);
    }
    let raw = if tty { Some(Raw::enter()?) } else { None };
    let mut last_size = size;
    let mut checked = Instant::now();
    let (mut stdout, mut stderr) = (std::io::stdout(), std::io::stderr());
    let mut sending_failed = false;
    let code = loop {
        match ws.read() {
            Ok(Message::Binary(b)) if !b.is_empty() => match b[0] {
                OUT_STDOUT => {
                    let _ = stdout.write_all(&b[1..]);
                    let _ = stdout.flush();
                }
                OUT_STDERR => {
                    let _ = stderr.write_all(&b[1..]);
                    let _ = stderr.flush();
                }
                OUT_EXIT if b.len() == 5 => {
                    break i32::from_be_bytes([b[1], b[2], b[3], b[4]]);
                }
                OUT_ERROR => {
                    drop(raw);
                    bail!("{}", String::from_utf8_lossy(&b[1..]));
                }
                _ => {}
            },
            Ok(Message::Close(_)) => {
                drop(raw);
                bail!("the agent closed the session before the command's exit code");
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => {
                drop(raw);
                bail!("the exec session broke: {e}");
            }
        }
        while !sending_failed && let Ok(m) = rx.try_recv() {
            let msg = match m {
                Some(bytes) => binary(IN_STDIN, &bytes),
                None => binary(IN_EOF, &[]),
            };
            // The agent may have sent the exit code and closed already (a command that ends
            // before its stdin's EOF is sent): read on for what it sent; a session that
            // really broke fails the next read.
            if ws.send(msg).is_err() {
                sending_failed = true;
            }
        }
        if tty && checked.elapsed() > Duration::from_millis(250) {
            checked = Instant::now();
            let now = window_size();
            if now.is_some() && now != last_size {
                last_size = now;
                if let Some((c, r)) = now {
                    let mut b = c.to_be_bytes().to_vec();
                    b.extend_from_slice(&r.to_be_bytes());
                    let _ = ws.send(binary(IN_RESIZE, &b));
                }
            }
        }
    };
    drop(raw);
    let _ = ws.close(None);
    Ok(code)
}
