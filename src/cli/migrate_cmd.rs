//! `perch migrate in` and `perch migrate out`.

use super::CliError;
use crate::config::Config;
use crate::migrate::{InOptions, MigrateError, OutOptions, migrate_in, migrate_out};

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Message(e.to_string()))
}

/// Which one-time code to mint.
enum Code {
    /// For signing a PLC operation (moving out).
    Plc,
    /// For createAccount (moving in).
    Invite,
}

/// Mints a one-time code on this box's database (the CLI runs beside the server, which made
/// the database: a missing one is a wrong --data-dir or a server never set up, and is not
/// created here).
async fn mint(config: &Config, code: Code) -> Result<String, CliError> {
    let app = super::commands::open(config.clone()).await?;
    let code = match code {
        Code::Plc => app.accounts().new_plc_code().await,
        Code::Invite => {
            app.accounts()
                .new_code(crate::account::Purpose::Invite)
                .await
        }
    };
    code.map_err(|e| CliError::Message(e.to_string()))
}

/// `perch account invite`.
pub fn invite(config: &Config) -> Result<(), CliError> {
    let code = runtime()?.block_on(mint(config, Code::Invite))?;
    println!("{code}");
    Ok(())
}

fn password_or_ask(
    password: Option<String>,
    from_stdin: bool,
    env: &str,
    prompt: &str,
) -> Result<String, CliError> {
    super::init::existing_password(password, from_stdin, env, prompt).map_err(CliError::Message)
}

fn finish(result: Result<String, MigrateError>) -> Result<(), CliError> {
    match result {
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

/// Moves this server's account to the PDS at `to`.
pub struct OutArgs {
    pub to: String,
    pub password: Option<String>,
    pub handle: Option<String>,
    pub email: Option<String>,
    pub invite_code: Option<String>,
    pub from: Option<String>,
    pub password_stdin: bool,
}

pub fn run_out(config: &Config, args: OutArgs) -> Result<(), CliError> {
    let password = password_or_ask(
        args.password,
        args.password_stdin,
        "PERCH_PASSWORD",
        "your password on this server",
    )?;
    runtime()?.block_on(async {
        // This box signs the PLC operation for itself: mint the one-time code directly.
        let plc_token = mint(config, Code::Plc).await?;
        let login = {
            let store = crate::store::Store::open(&config.data_dir.join("perch.sqlite"))
                .map_err(|e| CliError::Message(e.to_string()))?;
            store
                .read(crate::store::account::get_account)
                .await
                .map_err(|e| CliError::Message(e.to_string()))?
                .ok_or_else(|| CliError::Message("there is no account on this server".into()))?
                .did
        };
        let bar = super::progress::Reporter::new("blobs", "copied");
        let done = migrate_out(
            OutOptions {
                from: args.from.unwrap_or_else(|| config.public_url()),
                to: args.to,
                login,
                password,
                handle: args.handle,
                email: args.email,
                invite_code: args.invite_code,
                plc_token,
                plc_url: config.plc_url.clone(),
            },
            &bar,
        )
        .await;
        bar.finish();
        finish(done)
    })
}

pub fn run_in(
    config: &Config,
    from: String,
    password: Option<String>,
    password_stdin: bool,
    old_pds: Option<String>,
    to: Option<String>,
    plc_token: Option<String>,
) -> Result<(), CliError> {
    let password = password_or_ask(
        password,
        password_stdin,
        "PERCH_OLD_PASSWORD",
        &format!("password for {from} on the old PDS"),
    )?;
    let rt = runtime()?;
    let invite_code = Some(rt.block_on(mint(config, Code::Invite))?);
    let opts = InOptions {
        invite_code,
        from,
        password,
        old_pds,
        to: to.unwrap_or_else(|| config.public_url()),
        plc_token,
        plc_url: config.plc_url.clone(),
    };
    let bar = super::progress::Reporter::new("blobs", "copied");
    let done = rt.block_on(migrate_in(opts, &bar));
    bar.finish();
    finish(done)
}
