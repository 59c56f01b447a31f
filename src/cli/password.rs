//! Reading a new password: the first line of stdin (`--password-stdin`),
//! or a prompt on the terminal without echo, asked twice.

use super::{exit, CliError};
use std::io::{BufRead, IsTerminal, Write};

/// The password, read off the async runtime (reading blocks).
pub async fn read(from_stdin: bool) -> Result<String, CliError> {
    tokio::task::spawn_blocking(move || read_blocking(from_stdin))
        .await
        .map_err(|e| CliError::runtime(format!("cannot read the password: {e}")))?
}

fn read_blocking(from_stdin: bool) -> Result<String, CliError> {
    let stdin = std::io::stdin();
    if from_stdin {
        return read_line(&mut stdin.lock());
    }
    if !stdin.is_terminal() {
        return Err(CliError::new(
            exit::USAGE,
            "stdin is not a terminal: pass the password on stdin with --password-stdin",
        ));
    }
    let first = prompt("New password: ")?;
    let second = prompt("Repeat it: ")?;
    if first != second {
        return Err(CliError::invalid("the two passwords differ"));
    }
    Ok(first)
}

/// One line without its line end.
fn read_line(input: &mut impl BufRead) -> Result<String, CliError> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .map_err(|e| CliError::invalid(format!("cannot read the password from stdin: {e}")))?;
    let line = line.strip_suffix('\n').unwrap_or(&line);
    Ok(line.strip_suffix('\r').unwrap_or(line).to_string())
}

fn prompt(text: &str) -> Result<String, CliError> {
    let mut err = std::io::stderr();
    let _ = err.write_all(text.as_bytes());
    let _ = err.flush();
    let line = {
        let _quiet = EchoOff::new();
        read_line(&mut std::io::stdin().lock())
    };
    // The newline the user typed was not echoed.
    let _ = err.write_all(b"\n");
    line
}

/// Terminal echo off on stdin for as long as it lives.
struct EchoOff(Option<libc::termios>);

impl EchoOff {
    fn new() -> Self {
        // SAFETY: tcgetattr/tcsetattr on fd 0 with a termios we own.
        unsafe {
            let mut term: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(libc::STDIN_FILENO, &mut term) != 0 {
                return Self(None);
            }
            let saved = term;
            term.c_lflag &= !libc::ECHO;
            if libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &term) != 0 {
                return Self(None);
            }
            Self(Some(saved))
        }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            // SAFETY: restores the settings read in `new`.
            unsafe {
                libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, saved);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_without_its_end() {
        let read = |s: &str| read_line(&mut std::io::Cursor::new(s.as_bytes())).unwrap();
        assert_eq!(read("secret123\nmore\n"), "secret123");
        assert_eq!(read("secret123\r\n"), "secret123");
        assert_eq!(read("no newline"), "no newline");
        assert_eq!(read(""), "");
        assert_eq!(read(" spaces kept \n"), " spaces kept ");
    }
}
