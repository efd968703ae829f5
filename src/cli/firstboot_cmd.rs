//! `perch firstboot`: applies the owner's perch.toml from the SD card's boot partition
//! (see `crate::firstboot`). Run once per boot by perch-firstboot.service before perch
//! itself; without the file it does nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use super::GlobalArgs;
use super::init::{self, InitArgs};
use crate::config::DEFAULT_CONFIG_PATH;
use crate::firstboot::{self, APPLIED_FILE, BOOT_FILE, BootConfig, RESULT_FILE, system};

#[derive(clap::Args, Debug)]
pub struct FirstbootArgs {
    /// The FAT boot partition that holds perch.toml
    #[arg(long, value_name = "DIR", default_value = "/boot/firmware")]
    pub boot_dir: PathBuf,
    /// Root of the system to configure; units are started only when it is /
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
}

/// How long to wait for the network before registering a did:plc: Wi-Fi may only just
/// have been switched on.
const NETWORK_WAIT: Duration = Duration::from_secs(300);

pub fn main(args: FirstbootArgs, global: &GlobalArgs) -> ExitCode {
    let file = args.boot_dir.join(BOOT_FILE);
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("no {} : nothing to do", file.display());
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("perch: cannot read {}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let (result, code) = match apply(&args, global, &text) {
        // The untouched template: leave it for the owner to fill in.
        Ok(None) => (
            format!("{BOOT_FILE} sets nothing yet: fill it in (see the comments in it).\n"),
            ExitCode::SUCCESS,
        ),
        Ok(Some(report)) => {
            // The secrets leave the card only once everything that needs them is done.
            let kept = firstboot::scrub(&text);
            let moved =
                crate::fsutil::write_private(&args.boot_dir.join(APPLIED_FILE), kept.as_bytes())
                    .and_then(|()| std::fs::remove_file(&file))
                    .and_then(|()| crate::fsutil::sync_dir(&args.boot_dir));
            match moved {
                Ok(()) => (report, ExitCode::SUCCESS),
                Err(e) => (
                    format!(
                        "{report}\nBut {BOOT_FILE} could not be cleaned up: {e}. Delete it yourself: it holds your password.\n"
                    ),
                    ExitCode::FAILURE,
                ),
            }
        }
        Err(why) => (
            format!(
                "perch could not finish setting up from {BOOT_FILE}:\n\n  {why}\n\n\
                 Fix {BOOT_FILE} on this card and boot again.\n"
            ),
            ExitCode::FAILURE,
        ),
    };
    print!("{result}");
    let stamped = format!(
        "{}\n\n{result}",
        crate::syntax::format_datetime_millis(now_ms())
    );
    if let Err(e) =
        crate::fsutil::write_private(&args.boot_dir.join(RESULT_FILE), stamped.as_bytes())
    {
        eprintln!("perch: cannot write {RESULT_FILE}: {e}");
    }
    code
}

fn now_ms() -> i64 {
    crate::clock::unix_millis()
}

/// Applies what the file asks for; returns the report for the owner, None when the file
/// sets nothing.
fn apply(args: &FirstbootArgs, global: &GlobalArgs, text: &str) -> Result<Option<String>, String> {
    let c = firstboot::parse(text)?;
    if c == BootConfig::default() {
        return Ok(None);
    }
    let live = args.root == Path::new("/");
    let mut report = String::new();
    let mut start = Vec::new();
    if let Some(w) = &c.wifi {
        let (file, unit) = system::wifi(w);
        system::write(&args.root, &file).map_err(|e| format!("Wi-Fi settings: {e}"))?;
        system::enable(&args.root, &unit).map_err(|e| format!("Wi-Fi: {e}"))?;
        report.push_str(&format!("Wi-Fi: joining {:?}.\n", w.ssid));
        start.push(unit.name);
    }
    if !c.ssh_keys.is_empty() {
        let (file, unit) = system::ssh(&c.ssh_keys);
        system::write(&args.root, &file).map_err(|e| format!("SSH key: {e}"))?;
        system::enable(&args.root, &unit).map_err(|e| format!("SSH: {e}"))?;
        report.push_str(&format!(
            "SSH: on, for {} key(s); log in as root@perch.local.\n",
            c.ssh_keys.len()
        ));
        start.push(unit.name);
    }
    if live && !start.is_empty() {
        // --no-block: this unit runs before multi-user.target; waiting here for units
        // ordered after it would deadlock.
        let status = Command::new("systemctl")
            .args(["start", "--no-block"])
            .args(&start)
            .status()
            .map_err(|e| format!("systemctl: {e}"))?;
        if !status.success() {
            return Err(format!("systemctl start {} failed", start.join(" ")));
        }
    }
    if c.hostname.is_some() {
        report.push_str(&set_up_perch(args, global, &c, live)?);
    }
    Ok(Some(report))
}

fn set_up_perch(
    args: &FirstbootArgs,
    global: &GlobalArgs,
    c: &BootConfig,
    live: bool,
) -> Result<String, String> {
    let config_path = global
        .config
        .clone()
        .unwrap_or_else(|| args.root.join(DEFAULT_CONFIG_PATH.trim_start_matches('/')));
    if has_settings(&config_path) {
        // A second perch.toml must not replace a working server's account or keys.
        return Ok(format!(
            "perch is already set up ({} has settings); the perch settings in {BOOT_FILE} \
             were not used. Change them in that file over SSH.\n",
            config_path.display()
        ));
    }
    if c.migrate.is_some() {
        return Err(
            "migrate_from: moving an account in at first boot is not supported yet. Leave \
             migrate_from empty to start fresh, or set up over SSH and run `perch migrate in`."
                .into(),
        );
    }
    let plc_url = c
        .perch
        .iter()
        .find(|(k, _)| k == "plc_url")
        .map(|(_, v)| v.trim_matches('"').to_owned())
        .unwrap_or_else(|| "https://plc.directory".into());
    if live && !plc_url.is_empty() {
        wait_for(&plc_url, NETWORK_WAIT)?;
    }
    let init_args = InitArgs {
        non_interactive: true,
        hostname: c.hostname.clone(),
        handle: c.handle.clone(),
        acme_email: c.email.clone(),
        password: c.password.clone(),
        password_hash: c.password_hash.clone(),
        ..InitArgs::default()
    };
    let global = GlobalArgs {
        config: Some(config_path),
        ..global.clone()
    };
    let handle = c
        .handle
        .clone()
        .or_else(|| c.hostname.clone())
        .unwrap_or_default();
    let steps = init::run_with_settings(init_args, &global, c.perch.clone())?;
    Ok(format!("Account {handle} created on this box.\n{steps}"))
}

/// Whether a config file sets anything (the package ships one that is all comments).
fn has_settings(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| {
        t.lines().any(|l| {
            let l = l.trim();
            !l.is_empty() && !l.starts_with('#')
        })
    })
}

/// Waits until `url`'s host answers a TCP connection, so registering the DID does not
/// fail just because DHCP or Wi-Fi is a few seconds behind.
fn wait_for(url: &str, limit: Duration) -> Result<(), String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host_port = rest.split('/').next().unwrap_or(rest);
    let target = if host_port.contains(':') {
        host_port.to_owned()
    } else if url.starts_with("http://") {
        format!("{host_port}:80")
    } else {
        format!("{host_port}:443")
    };
    let start = Instant::now();
    loop {
        use std::net::ToSocketAddrs;
        let reached = target.to_socket_addrs().ok().is_some_and(|mut addrs| {
            addrs.any(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(5)).is_ok())
        });
        if reached {
            return Ok(());
        }
        if start.elapsed() > limit {
            return Err(format!(
                "no network: {target} did not answer for {} minutes. Check the cable or the \
                 Wi-Fi settings.",
                limit.as_secs() / 60
            ));
        }
        std::thread::sleep(Duration::from_secs(3));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(boot: &Path, root: &Path, data: &Path) -> ExitCode {
        let args = FirstbootArgs {
            boot_dir: boot.to_owned(),
            root: root.to_owned(),
        };
        let global = GlobalArgs {
            data_dir: Some(data.to_owned()),
            ..GlobalArgs::default()
        };
        main(args, &global)
    }

    #[test]
    fn first_boot_sets_up_once_and_scrubs_the_card() {
        let boot = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("var/lib/perch");
        std::fs::write(
            boot.path().join(BOOT_FILE),
            "hostname = \"pds.example.com\"\npassword = \"first boot secret\"\n\
             wifi_ssid = \"home\"\nwifi_password = \"wifi secret\"\n\
             ssh_key = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA me\"\n\
             [perch]\nplc_url = \"\"\ntls = \"off\"\nlisten = \"127.0.0.1:0\"\nrelays = []\n",
        )
        .unwrap();
        assert_eq!(run(boot.path(), root.path(), &data), ExitCode::SUCCESS);

        // The card: no secrets left, the result for the owner.
        assert!(!boot.path().join(BOOT_FILE).exists());
        let applied = std::fs::read_to_string(boot.path().join(APPLIED_FILE)).unwrap();
        assert!(applied.contains("hostname = \"pds.example.com\""));
        for secret in ["first boot secret", "wifi secret"] {
            assert!(!applied.contains(secret));
        }
        let result = std::fs::read_to_string(boot.path().join(RESULT_FILE)).unwrap();
        assert!(result.contains("Wi-Fi: joining \"home\""), "{result}");
        assert!(
            result.contains("Account pds.example.com created"),
            "{result}"
        );
        assert!(result.contains("What is left to do"), "{result}");

        // The system: perch's config, Wi-Fi and SSH.
        let config = std::fs::read_to_string(root.path().join("etc/perch/perch.toml")).unwrap();
        assert!(config.contains("hostname = \"pds.example.com\""));
        assert!(config.contains("tls = \"off\""));
        assert!(config.contains("relays = []"));
        let wpa = root
            .path()
            .join("etc/wpa_supplicant/wpa_supplicant-wlan0.conf");
        assert!(
            std::fs::read_to_string(wpa)
                .unwrap()
                .contains("psk=\"wifi secret\"")
        );
        assert!(root.path().join("root/.ssh/authorized_keys").exists());

        // The account exists and takes the password.
        let store = crate::store::Store::open(&data.join("perch.sqlite")).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let acct = rt
            .block_on(store.read(crate::store::account::get_account))
            .unwrap()
            .unwrap();
        assert_eq!(acct.handle, "pds.example.com");
        assert!(crate::auth::verify_password(
            "first boot secret",
            &acct.password_hash
        ));

        // A new perch.toml later changes system settings but never the account.
        std::fs::write(
            boot.path().join(BOOT_FILE),
            "hostname = \"other.example.com\"\npassword = \"another secret\"\n",
        )
        .unwrap();
        assert_eq!(run(boot.path(), root.path(), &data), ExitCode::SUCCESS);
        let result = std::fs::read_to_string(boot.path().join(RESULT_FILE)).unwrap();
        assert!(result.contains("already set up"), "{result}");
        let config = std::fs::read_to_string(root.path().join("etc/perch/perch.toml")).unwrap();
        assert!(config.contains("pds.example.com") && !config.contains("other.example.com"));
    }

    #[test]
    fn a_bad_file_stays_for_the_owner_to_fix() {
        let boot = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let text =
            "hostname = \"pds.example.com\"\npassword = \"short\"\n[perch]\nplc_url = \"\"\n";
        std::fs::write(boot.path().join(BOOT_FILE), text).unwrap();
        let data = root.path().join("data");
        assert_eq!(run(boot.path(), root.path(), &data), ExitCode::FAILURE);
        assert_eq!(
            std::fs::read_to_string(boot.path().join(BOOT_FILE)).unwrap(),
            text
        );
        let result = std::fs::read_to_string(boot.path().join(RESULT_FILE)).unwrap();
        assert!(result.contains("could not finish"), "{result}");
        assert!(result.contains("password"), "{result}");
        assert!(!root.path().join("etc/perch/perch.toml").exists());
    }

    #[test]
    fn the_untouched_template_stays() {
        let boot = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let template = include_str!("../../image/boot/perch.toml");
        std::fs::write(boot.path().join(BOOT_FILE), template).unwrap();
        let data = root.path().join("d");
        assert_eq!(run(boot.path(), root.path(), &data), ExitCode::SUCCESS);
        assert_eq!(
            std::fs::read_to_string(boot.path().join(BOOT_FILE)).unwrap(),
            template
        );
        let result = std::fs::read_to_string(boot.path().join(RESULT_FILE)).unwrap();
        assert!(result.contains("sets nothing yet"), "{result}");
        assert!(!root.path().join("etc").exists());
    }

    #[test]
    fn no_file_is_nothing_to_do() {
        let boot = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        assert_eq!(
            run(boot.path(), root.path(), &root.path().join("d")),
            ExitCode::SUCCESS
        );
        assert!(!boot.path().join(RESULT_FILE).exists());
    }
}
