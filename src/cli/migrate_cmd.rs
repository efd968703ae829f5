//! `perch migrate in`.

use super::CliError;
use crate::config::Config;
use crate::migrate::{InOptions, MigrateError, migrate_in};

pub fn run_in(
    config: &Config,
    from: String,
    password: Option<String>,
    old_pds: Option<String>,
    to: Option<String>,
    plc_token: Option<String>,
) -> Result<(), CliError> {
    let password = match password.or_else(|| std::env::var("PERCH_OLD_PASSWORD").ok()) {
        Some(p) => p,
        None => {
            eprint!("password for {from} on the old PDS: ");
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| CliError::Message(e.to_string()))?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    let opts = InOptions {
        from,
        password,
        old_pds,
        to: to.unwrap_or_else(|| config.public_url()),
        plc_token,
        plc_url: config.plc_url.clone(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Message(e.to_string()))?;
    match rt.block_on(migrate_in(opts)) {
        Ok(summary) => {
            println!("{summary}");
            Ok(())
        }
        Err(MigrateError::Waiting(m)) => {
            println!("{m}");
            Err(CliError::Message("not finished yet (see above)".into()))
        }
        Err(e) => Err(CliError::Message(format!(
            "{e}\nNothing is lost: run the same command again to continue where it stopped."
        ))),
    }
}
