//! `spcvm`: statistical process control on ion-implant and RTP tool telemetry.
//!
//! `spcvm backtest` replays recorded telemetry through the chart configuration and writes
//! the alerts it would have raised; `spcvm run` is the streaming job (Kafka, or files as
//! the embedded default); `spcvm topics create` creates its topics. See `spcvm --help`.
//! The command line is the library's ([`spcvm::cli`]); this build adds no stage or sink.

fn main() -> std::process::ExitCode {
    spcvm::cli::main_with(spcvm::cli::Extensions::default())
}
