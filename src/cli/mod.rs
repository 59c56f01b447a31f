//! The command line of the `redis-chat` binary (feature `ssr`).
//!
//! `redis-chat` alone, or `redis-chat serve`, runs the server. The other
//! subcommands are for operators and scripts; they work on the Redis the
//! server uses (`REDIS_URL`, or the embedded one of `REDIS_DATA_DIR`, see
//! [`context`]) through the same code as the server ([`crate::server`]):
//!
//! | command | file |
//! |---|---|
//! | `serve` | [`serve`] |
//! | `user add`, `user passwd`, `users` | [`user`] (passwords: [`password`]) |
//! | `send` | [`send`] |
//! | `inbox`, `contacts` | [`inbox`] |
//! | `demo-data` | [`demo`] |
//!
//! Every command prints one result: text for people, or one JSON document
//! with `--json`. Errors are one line on stderr and an exit code
//! ([`exit`]).

pub mod context;
pub mod demo;
pub mod inbox;
pub mod password;
pub mod send;
pub mod serve;
pub mod user;

use crate::api::ApiError;
use crate::protocol::{codes, FrameError};
use clap::{Args, Parser, Subcommand};
use context::Ctx;
use std::process::ExitCode;

/// Exit codes.
pub mod exit {
    pub const OK: u8 = 0;
    /// Redis unreachable, configuration error, anything that may work later.
    pub const RUNTIME: u8 = 1;
    /// Bad command line (clap's own code).
    pub const USAGE: u8 = 2;
    /// An unknown user or room.
    pub const NOT_FOUND: u8 = 3;
    /// Input the chat refuses: a bad name or password, an empty message,
    /// a room the sender is not a member of, a taken name.
    pub const INVALID: u8 = 4;
}

/// `redis-chat --version`: the crate version and the commit it was built
/// from (`REDIS_CHAT_COMMIT`, set by the Makefile from git; "unknown" for a
/// build without it).
pub const VERSION: &str = const_format::concatcp!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    match option_env!("REDIS_CHAT_COMMIT") {
        Some(commit) => commit,
        None => "unknown",
    },
    ")"
);

#[derive(Parser, Debug)]
#[command(
    name = "redis-chat",
    version = VERSION,
    about = "A real-time chat on Redis. Without a command: serve.",
    after_help = "Redis: REDIS_URL, or without it the embedded redis-server of REDIS_DATA_DIR \
                  (./data/redis), as for the server.\n\
                  Exit codes: 0 ok, 1 runtime error, 2 usage, 3 not found, 4 invalid input."
)]
pub struct Cli {
    /// Print one JSON document instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server (the default).
    Serve,
    /// Create a user or change a password.
    #[command(subcommand)]
    User(UserCommand),
    /// List every user with the online flag.
    Users,
    /// Send a message as a user, to a user (private room) or a room.
    Send(SendArgs),
    /// Messages from others in NAME's private rooms, newest first.
    Inbox(InboxArgs),
    /// The users NAME has private rooms with.
    Contacts {
        /// The user.
        name: String,
    },
    /// Create the demo users and messages (as the server does with
    /// DEMO_DATA=true, on any address); does nothing when they exist or
    /// there are other users.
    DemoData,
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create a user (same rules as registration).
    Add(PasswordArgs),
    /// Set a user's password and end all their sessions.
    Passwd(PasswordArgs),
}

#[derive(Args, Debug)]
pub struct PasswordArgs {
    /// The user name.
    pub name: String,
    /// Read the password from the first line of stdin instead of a prompt.
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Args, Debug)]
pub struct SendArgs {
    /// The sender.
    #[arg(long = "as", value_name = "NAME")]
    pub from: String,
    #[command(flatten)]
    pub target: Target,
    /// The message (several words are joined with spaces).
    #[arg(required = true, num_args = 1.., value_name = "TEXT")]
    pub text: Vec<String>,
}

#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct Target {
    /// The recipient: the private room with this user (created if needed).
    #[arg(long, value_name = "NAME")]
    pub to: Option<String>,
    /// A room id the sender is a member of (`0` is General).
    #[arg(long, value_name = "ID")]
    pub room: Option<String>,
}

#[derive(Args, Debug)]
pub struct InboxArgs {
    /// The user.
    pub name: String,
    /// At most this many messages.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub limit: u16,
    /// Also list messages from others in General.
    #[arg(long)]
    pub general: bool,
}

/// A failed command: a one-line message and its exit code.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub message: String,
}

impl CliError {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
    pub fn runtime(message: impl Into<String>) -> Self {
        Self::new(exit::RUNTIME, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(exit::NOT_FOUND, message)
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(exit::INVALID, message)
    }
}

fn exit_code_of(code: &str) -> u8 {
    match code {
        codes::NOT_FOUND => exit::NOT_FOUND,
        codes::BAD_REQUEST
        | codes::FORBIDDEN
        | codes::CONFLICT
        | codes::EMPTY
        | codes::TOO_LONG
        | codes::UNAUTHORIZED => exit::INVALID,
        _ => exit::RUNTIME,
    }
}

impl From<ApiError> for CliError {
    fn from(e: ApiError) -> Self {
        let message = if e.code == codes::UNAVAILABLE {
            "Redis is unavailable (RUST_LOG=warn shows why)".to_string()
        } else {
            e.message
        };
        Self::new(exit_code_of(&e.code), message)
    }
}

impl From<FrameError> for CliError {
    fn from(e: FrameError) -> Self {
        Self::new(exit_code_of(&e.code), e.message)
    }
}

impl From<redis::RedisError> for CliError {
    fn from(e: redis::RedisError) -> Self {
        Self::runtime(format!("Redis: {e}"))
    }
}

/// What a command prints: text for people, JSON for `--json` (in the
/// field order of the types, as on the wire).
pub struct Output {
    pub text: String,
    pub json: String,
}

impl Output {
    pub fn new(text: impl Into<String>, json: impl serde::Serialize) -> Self {
        Self {
            text: text.into(),
            json: serde_json::to_string(&json).unwrap_or_else(|_| "null".into()),
        }
    }
}

/// Runs a parsed command line; `main` returns its exit code.
pub fn run(cli: Cli) -> ExitCode {
    crate::server::redis_tls::install_crypto_provider();
    let command = match cli.command {
        None | Some(Command::Serve) => return serve::run(),
        Some(command) => command,
    };
    // Quiet by default: the result goes to stdout, one error line to stderr.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_writer(std::io::stderr)
        .init();
    // One thread: a command does one thing at a time (and `Ctx` relies on
    // it to keep presence passive).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&CliError::runtime(format!("cannot start: {e}"))),
    };
    match runtime.block_on(dispatch(command)) {
        Ok(out) => {
            if cli.json {
                println!("{}", out.json);
            } else if !out.text.is_empty() {
                println!("{}", out.text.trim_end());
            }
            ExitCode::from(exit::OK)
        }
        Err(e) => fail(&e),
    }
}

fn fail(e: &CliError) -> ExitCode {
    eprintln!("redis-chat: {}", e.message.trim());
    ExitCode::from(e.code)
}

async fn dispatch(command: Command) -> Result<Output, CliError> {
    match command {
        Command::Serve => unreachable!("handled by run"),
        Command::User(UserCommand::Add(args)) => {
            // Checked before asking for a password or touching Redis.
            let name = crate::server::store::validate_username(&args.name)?;
            let password = password::read(args.password_stdin).await?;
            crate::server::passwords::validate_password(&password)?;
            with_ctx(async |ctx| user::add(ctx, &name, &password).await).await
        }
        Command::User(UserCommand::Passwd(args)) => {
            with_ctx(async |ctx| user::passwd(ctx, &args.name, args.password_stdin).await).await
        }
        Command::Users => with_ctx(async |ctx| user::list(ctx).await).await,
        Command::Send(args) => with_ctx(async |ctx| send::run(ctx, &args).await).await,
        Command::Inbox(args) => with_ctx(async |ctx| inbox::inbox(ctx, &args).await).await,
        Command::Contacts { name } => with_ctx(async |ctx| inbox::contacts(ctx, &name).await).await,
        Command::DemoData => with_ctx(async |ctx| demo::run(ctx).await).await,
    }
}

/// Connects, runs `work`, and disconnects (stopping an embedded Redis this
/// command started) whatever the outcome.
async fn with_ctx<T>(work: impl AsyncFnOnce(&Ctx) -> Result<T, CliError>) -> Result<T, CliError> {
    let ctx = Ctx::open().await?;
    let result = work(&ctx).await;
    ctx.close().await;
    result
}

/// A user's id by name, or exit code 3.
pub async fn find_user(ctx: &Ctx, name: &str) -> Result<crate::protocol::User, CliError> {
    let name = name.trim();
    let not_found = || CliError::not_found(format!("no such user: {name:?}"));
    if name.is_empty() || name.len() > 64 {
        return Err(not_found());
    }
    let id = ctx.store.find_user_id(name).await?.ok_or_else(not_found)?;
    let username = ctx.store.username_of(id).await?.ok_or_else(not_found)?;
    Ok(crate::protocol::User { id, username })
}

/// `2024-05-01 12:34:56` (UTC) from Unix milliseconds.
pub fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Message text on one line: newlines and tabs shown as `\n`, `\t`.
pub fn one_line(text: &str) -> String {
    text.replace('\n', "\\n").replace('\t', "\\t")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_700_000_000_123), "2023-11-14 22:13:20");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
    }

    #[test]
    fn the_command_line_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["redis-chat"]).unwrap();
        assert!(cli.command.is_none());
        let cli = Cli::try_parse_from([
            "redis-chat",
            "send",
            "--as",
            "a",
            "--to",
            "b",
            "hi",
            "there",
        ])
        .unwrap();
        let Some(Command::Send(s)) = cli.command else {
            panic!("not send")
        };
        assert_eq!(s.text.join(" "), "hi there");
        assert!(Cli::try_parse_from(["redis-chat", "send", "--as", "a", "hi"]).is_err());
        assert!(Cli::try_parse_from([
            "redis-chat",
            "send",
            "--as",
            "a",
            "--to",
            "b",
            "--room",
            "0",
            "hi"
        ])
        .is_err());
        assert!(
            Cli::try_parse_from(["redis-chat", "users", "--json"])
                .unwrap()
                .json
        );
    }

    #[test]
    fn error_codes_map_to_exit_codes() {
        assert_eq!(
            CliError::from(ApiError::new(codes::NOT_FOUND, "x")).code,
            exit::NOT_FOUND
        );
        assert_eq!(
            CliError::from(ApiError::bad_request("x")).code,
            exit::INVALID
        );
        assert_eq!(CliError::from(ApiError::unavailable()).code, exit::RUNTIME);
    }
}
