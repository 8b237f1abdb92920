//! Helper servers the tests run as programs of their own (Python's ssl and grpcio servers):
//! each prints the port it listens on as its first line and serves until its standard input
//! closes.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A running helper server; stopped (standard input closed, then killed) when dropped.
pub struct PortProcess {
    child: Child,
    pub port: u16,
}

impl PortProcess {
    /// Start `cmd` and read its port; `hint` says what to install should it print none.
    pub fn start(mut cmd: Command, hint: &str) -> PortProcess {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{cmd:?} printed {line:?}, not a port ({hint})"));
        PortProcess { child, port }
    }
}

impl Drop for PortProcess {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A proxy process, killed if the test ends (a failed assertion) while it still runs.
pub struct Proc(pub Child);

impl std::ops::Deref for Proc {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Proc {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
