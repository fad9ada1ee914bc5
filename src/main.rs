//! The `sealgate` command: argument parsing and dispatch only. Each command
//! family lives in its own file under `cli/`.

#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;

use clap::Parser;

/// The error and its causes on one line, each cause once: an error whose
/// message already quotes its source ("cannot read: No such file") does
/// not repeat it.
fn error_text(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

fn main() -> ExitCode {
    // This executable can run `sandbox-exec` for the stdio backends it starts.
    sealgate::sandbox::this_executable_is_the_helper();
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::Layer as _;
    let cli = cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("SEALGATE_LOG")
        .unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match cli.log_format() {
        // One JSON object a line, for a log collector; the request span's
        // fields (the request digest: the correlation id) come along.
        cli::LogFormat::Json => logs.json().boxed(),
        // Colour codes only for a person at a terminal: a file, a pipe or a
        // journal gets plain text. NO_COLOR (non-empty) turns them off there too.
        cli::LogFormat::Text => logs
            .with_ansi(
                std::io::IsTerminal::is_terminal(&std::io::stderr())
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
            )
            .boxed(),
    };
    // The trace export slot first (it sees request spans only, and only
    // when [traces] is configured), then the log lines at SEALGATE_LOG's
    // level, with the HTTP/2 library's warnings about peers summarised (a
    // peer must not write the log at its own pace).
    use tracing_subscriber::filter::FilterExt as _;
    let warnings = sealgate::protocol_log::ProtocolWarnings::new();
    let filter = filter.and(warnings.clone());
    tracing_subscriber::registry()
        .with(sealgate::traces::layer())
        .with(logs.with_filter(filter))
        .init();
    let result = cli::run(cli);
    warnings.flush();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_text(&e));
            ExitCode::from(1)
        }
    }
}
