//! The `switchyard` command: run the proxy, check a config, or start a demo topology.

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use switchyard::app::Server;

/// mimalloc rather than glibc's allocator: the HTTP/2 path allocates per frame and per header,
/// and under load glibc's free lists (`unlink_chunk`, `malloc_consolidate`) took about a tenth
/// of the edge's samples (benches/README.md). The `system-alloc` feature keeps glibc's, for
/// heap profilers that follow malloc (heaptrack, valgrind).
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "PostgreSQL and MySQL proxy: pooling, routing, failover"
)]
struct Cli {
    /// Log format: human-readable text or JSON lines for log shippers.
    #[arg(long, value_enum, default_value = "text", global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy with a config file.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config file; prints the key and reason of the first error.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Start a local PostgreSQL primary with two streaming replicas and a MariaDB primary with
    /// one replica, the proxy in front of both; prints connection URIs; Ctrl-C stops everything.
    Demo {
        /// Port for the proxy's PostgreSQL listener (0 picks a free one).
        #[arg(long, default_value_t = 6432)]
        port: u16,
        /// Port for the proxy's MySQL listener (0 picks a free one).
        #[arg(long, default_value_t = 3307)]
        mysql_port: u16,
        /// Port for the HTTP edge in front of the sample services (0 picks a free one).
        #[arg(long, default_value_t = 8080)]
        http_port: u16,
    },
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SWITCHYARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Check { config } => match switchyard::app::load_config(&config) {
            Ok(_) => {
                println!("{}: ok", config.display());
                Ok(())
            }
            Err(e) => {
                eprintln!("{}: {e}", config.display());
                std::process::exit(1);
            }
        },
        Command::Run { config } => {
            let server = Server::start_file(&config)
                .with_context(|| format!("loading {}", config.display()))?;
            if let Some(a) = server.pg_addr {
                tracing::info!(listen = %a, "postgres listener ready");
            }
            // SIGHUP reloads (the outcome is logged by the reload itself).
            wait_for_stop(|| {
                let _ = server.reload();
            })?;
            tracing::info!("shutting down: draining clients");
            server.shutdown();
            Ok(())
        }
        Command::Demo {
            port,
            mysql_port,
            http_port,
        } => switchyard::demo::run(port, mysql_port, http_port, |on_hup| wait_for_stop(on_hup)),
    }
}

/// Block until SIGINT or SIGTERM, calling `on_hup` for every SIGHUP meanwhile.
///
/// A dedicated signal thread (signal-hook's self-pipe) rather than tokio's signal driver: with
/// tokio's `signal` feature compiled in, every runtime, including the workers', would check
/// for signals and orphaned child processes each time it parks.
fn wait_for_stop(on_hup: impl Fn()) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    for sig in signals.forever() {
        if sig == SIGHUP {
            tracing::info!("SIGHUP: reloading the config");
            on_hup();
        } else {
            return Ok(());
        }
    }
    Ok(())
}
