use super::*;
use std::cell::RefCell;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

type Pairs<'a> = &'a [(&'a str, &'a str)];

fn env_of<'a>(pairs: Pairs<'a>) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

fn files_of<'a>(pairs: Pairs<'a>) -> impl Fn(&Path) -> io::Result<String> + 'a {
    move |path| {
        pairs
            .iter()
            .find(|(k, _)| Path::new(k) == path)
            .map(|(_, v)| (*v).to_owned())
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
}

fn load(args: &Overrides, env: Pairs, files: Pairs) -> Result<Config, ConfigError> {
    Config::load_from(args, &env_of(env), &files_of(files))
}

fn with_file(path: &str) -> Overrides {
    Overrides {
        config_path: Some(PathBuf::from(path)),
        ..Overrides::default()
    }
}

fn dev() -> Overrides {
    Overrides {
        dev: true,
        ..Overrides::default()
    }
}

/// Loads `toml` as the given config file with no environment.
fn load_toml(toml: &str) -> Result<Config, ConfigError> {
    load(&with_file("/c.toml"), &[], &[("/c.toml", toml)])
}

#[test]
fn defaults() {
    let read = RefCell::new(Vec::new());
    let reader = |p: &Path| -> io::Result<String> {
        read.borrow_mut().push(p.to_owned());
        Err(io::Error::from(io::ErrorKind::NotFound))
    };
    let c = Config::load_from(
        &Overrides::default(),
        &env_of(&[("PERCH_HOSTNAME", "PDS.Example.com")]),
        &reader,
    )
    .unwrap();
    assert_eq!(read.into_inner(), vec![PathBuf::from(DEFAULT_CONFIG_PATH)]);
    assert_eq!(c.hostname, "pds.example.com");
    assert_eq!(c.data_dir, PathBuf::from("/var/lib/perch"));
    assert_eq!(c.listen, "[::]:443".parse().unwrap());
    assert_eq!(c.http_listen, Some("[::]:80".parse().unwrap()));
    assert_eq!(c.tls, TlsMode::Acme);
    assert_eq!(c.tls_cert, None);
    assert_eq!(c.tls_key, None);
    assert_eq!(c.acme_directory, DEFAULT_ACME_DIRECTORY);
    assert_eq!(c.acme_email, None);
    assert_eq!(c.plc_url, "https://plc.directory");
    assert_eq!(c.appview_url, "https://api.bsky.app");
    assert_eq!(c.appview_did, "did:web:api.bsky.app");
    assert_eq!(c.chat_url, "https://api.bsky.chat");
    assert_eq!(c.chat_did, "did:web:api.bsky.chat");
    assert_eq!(c.relays, vec!["https://bsky.network".to_owned()]);
    assert_eq!(c.blob_limit, 100 * 1024 * 1024);
    assert_eq!(c.log, "info");
    assert_eq!(c.admin_password, None);
    assert!(!c.dev);
    assert!(!c.allow_loopback);
    assert!(c.trusted_proxies.is_empty());
    assert_eq!(c.public_url(), "https://pds.example.com");
}

#[test]
fn hostname_is_required_outside_dev() {
    let file = [(DEFAULT_CONFIG_PATH, "log = \"info\"\n")];
    let e = load(&Overrides::default(), &[], &file).unwrap_err();
    assert_eq!(e.key, "hostname");
    assert!(e.to_string().starts_with("hostname: is not set"), "{e}");
    assert!(e.message.contains("PERCH_HOSTNAME"), "{e}");
    // No config file at all: perch was never set up here.
    let missing = |p: &Path| -> io::Result<String> {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            p.display().to_string(),
        ))
    };
    let e = Config::load_from(&Overrides::default(), &|_| None, &missing).unwrap_err();
    assert_eq!(e.key, "hostname");
    assert!(
        e.message.contains("not set up yet") && e.message.contains("sudo perch init"),
        "{e}"
    );
}

#[test]
fn dev_defaults_and_no_system_file() {
    let reader = |p: &Path| -> io::Result<String> { panic!("read {}", p.display()) };
    let c = Config::load_from(&dev(), &|_| None, &reader).unwrap();
    assert!(c.dev);
    assert_eq!(c.hostname, "localhost");
    assert_eq!(c.listen, "127.0.0.1:2583".parse().unwrap());
    assert_eq!(c.data_dir, PathBuf::from("./perch-dev"));
    assert_eq!(c.tls, TlsMode::Off);
    assert_eq!(c.http_listen, None);
    assert_eq!(c.plc_url, "");
    assert!(c.relays.is_empty());
    assert_eq!(c.appview_url, "https://api.bsky.app");
    assert_eq!(c.public_url(), "http://localhost:2583");
    assert_eq!(Config::dev("/tmp/d").data_dir, PathBuf::from("/tmp/d"));
}

#[test]
fn dev_values_can_be_overridden() {
    let args = Overrides {
        dev: true,
        config_path: Some("/c.toml".into()),
        ..Overrides::default()
    };
    let c = load(
        &args,
        &[("PERCH_PLC_URL", "http://127.0.0.1:2582/")],
        &[(
            "/c.toml",
            "hostname = \"dev.example.com\"\nlisten = \"127.0.0.1:8080\"",
        )],
    )
    .unwrap();
    assert_eq!(c.hostname, "dev.example.com");
    assert_eq!(
        c.tls,
        TlsMode::Off,
        "dev stays plain HTTP unless tls is set"
    );
    assert_eq!(c.plc_url, "http://127.0.0.1:2582");
    assert_eq!(c.public_url(), "http://dev.example.com:8080");
}

#[test]
fn precedence_flag_over_env_over_file_over_default() {
    let file = "hostname = \"file.example.com\"\n\
                log = \"warn\"\n\
                listen = \"10.0.0.1:1000\"\n\
                data_dir = \"/from/file\"\n\
                blob_limit = \"1MiB\"\n\
                relays = [\"https://relay.file.example\"]\n";
    let env = [
        ("PERCH_LOG", "debug"),
        ("PERCH_LISTEN", "10.0.0.2:2000"),
        ("PERCH_DATA_DIR", "/from/env"),
        ("PERCH_RELAYS", "https://a.example, https://b.example/,"),
    ];
    let args = Overrides {
        config_path: Some("/c.toml".into()),
        data_dir: Some("/from/flag".into()),
        listen: Some("10.0.0.3:3000".into()),
        dev: false,
    };
    let c = load(&args, &env, &[("/c.toml", file)]).unwrap();
    assert_eq!(c.hostname, "file.example.com"); // file only
    assert_eq!(c.blob_limit, 1 << 20); // file only
    assert_eq!(c.log, "debug"); // env over file
    assert_eq!(
        c.relays,
        vec![
            "https://a.example".to_owned(),
            "https://b.example".to_owned()
        ]
    );
    assert_eq!(c.listen, "10.0.0.3:3000".parse().unwrap()); // flag over env and file
    assert_eq!(c.data_dir, PathBuf::from("/from/flag"));
    assert_eq!(c.chat_url, "https://api.bsky.chat"); // default
    assert_eq!(c.http_listen, Some("10.0.0.3:80".parse().unwrap()));

    // Without the flags, env wins; without env, the file.
    let no_flags = with_file("/c.toml");
    let c = load(&no_flags, &env, &[("/c.toml", file)]).unwrap();
    assert_eq!(c.listen, "10.0.0.2:2000".parse().unwrap());
    assert_eq!(c.data_dir, PathBuf::from("/from/env"));
    let c = load(&no_flags, &[], &[("/c.toml", file)]).unwrap();
    assert_eq!(c.listen, "10.0.0.1:1000".parse().unwrap());
    assert_eq!(c.log, "warn");
}

#[test]
fn unknown_key_is_named() {
    let e = load_toml("hostname = \"a.example.com\"\nfrobnicate = 1\n").unwrap_err();
    assert_eq!(e.key, "frobnicate");
    assert_eq!(e.origin.as_deref(), Some("/c.toml"));
    let text = e.to_string();
    assert!(text.starts_with("frobnicate: unknown key"), "{text}");
    assert!(text.contains("data_dir"), "lists the valid keys: {text}");

    let e = load_toml("data-dir = \"/x\"").unwrap_err();
    assert_eq!(e.key, "data-dir");
    assert!(e.message.contains("did you mean \"data_dir\""), "{e}");
    let e = load_toml("dev = true").unwrap_err();
    assert!(e.message.contains("--dev"), "{e}");
    // Tables are not keys perch knows either.
    let e = load_toml("[server]\nlisten = \"0.0.0.0:443\"").unwrap_err();
    assert_eq!(e.key, "server");
}

#[test]
fn bad_listen_is_named_with_its_origin() {
    let e = load_toml("hostname = \"a.example.com\"\nlisten = \"foo\"").unwrap_err();
    assert_eq!(e.key, "listen");
    assert_eq!(
        e.to_string(),
        "listen: \"foo\" is not an address like [::]:443; write IP:PORT, e.g. \
         \"[::]:443\" (every address), \"127.0.0.1:2583\" or \"0.0.0.0:443\" (from /c.toml)"
    );

    let e = load(&dev(), &[("PERCH_LISTEN", "localhost:80")], &[]).unwrap_err();
    assert_eq!(
        (e.key.as_str(), e.origin.as_deref()),
        ("listen", Some("PERCH_LISTEN"))
    );

    let args = Overrides {
        listen: Some("1.2.3.4".into()),
        ..dev()
    };
    let e = load(&args, &[], &[]).unwrap_err();
    assert_eq!(
        (e.key.as_str(), e.origin.as_deref()),
        ("listen", Some("--listen"))
    );

    let e = load_toml("hostname = \"a.example.com\"\nlisten = 443").unwrap_err();
    assert_eq!(e.key, "listen");
    assert!(
        e.message.contains("expected a string, found an integer"),
        "{e}"
    );
    assert!(e.message.contains("listen = \"[::]:443\""), "{e}");
}

#[test]
fn backfill_hours_key() {
    let base = "hostname = \"pds.example.com\"\n";
    assert_eq!(load_toml(base).unwrap().backfill_hours, 72);
    assert_eq!(
        load_toml(&format!("{base}backfill_hours = 24"))
            .unwrap()
            .backfill_hours,
        24
    );
    for bad in [
        "backfill_hours = 0",
        "backfill_hours = -3",
        "backfill_hours = \"soon\"",
        "backfill_hours = 99999",
    ] {
        let e = load_toml(&format!("{base}{bad}")).unwrap_err();
        assert_eq!(e.key, "backfill_hours", "{bad}: {e}");
    }
}

#[test]
fn backup_keys() {
    let base = "hostname = \"pds.example.com\"\ndata_dir = \"/var/lib/perch\"\n";
    let c = load_toml(base).unwrap();
    assert_eq!(c.backup_dir, None);
    assert_eq!(c.backup_interval_hours, 0);
    assert_eq!(c.backup_keep, 7);
    let c = load_toml(&format!(
        "{base}backup_dir = \"/mnt/usb/b\"\nbackup_interval_hours = 24\nbackup_keep = 3\n"
    ))
    .unwrap();
    assert_eq!(c.backup_dir, Some(PathBuf::from("/mnt/usb/b")));
    assert_eq!(c.backup_interval_hours, 24);
    assert_eq!(c.backup_keep, 3);
    assert_eq!(load_toml(&c.redacted_toml()).unwrap(), c);
    let c = load(
        &with_file("/c.toml"),
        &[
            ("PERCH_BACKUP_DIR", "/b"),
            ("PERCH_BACKUP_INTERVAL_HOURS", "6"),
        ],
        &[("/c.toml", base)],
    )
    .unwrap();
    assert_eq!(
        (c.backup_dir, c.backup_interval_hours),
        (Some(PathBuf::from("/b")), 6)
    );
    for (bad, key) in [
        ("backup_interval_hours = 24", "backup_dir"),
        ("backup_dir = \"/var/lib/perch/backups\"", "backup_dir"),
        ("backup_interval_hours = -1", "backup_interval_hours"),
        ("backup_interval_hours = 99999", "backup_interval_hours"),
        ("backup_keep = 0", "backup_keep"),
        ("backup_keep = \"many\"", "backup_keep"),
    ] {
        let e = load_toml(&format!("{base}{bad}")).unwrap_err();
        assert_eq!(e.key, key, "{bad}: {e}");
    }
}

#[test]
fn blob_limit_sizes() {
    assert_eq!(parse_size("5MiB"), Ok(5 * 1024 * 1024));
    assert_eq!(parse_size("5MB"), Ok(5_000_000));
    assert_eq!(parse_size("5 mib"), Ok(5 * 1024 * 1024));
    assert_eq!(parse_size("512KiB"), Ok(512 * 1024));
    assert_eq!(parse_size("2kB"), Ok(2000));
    assert_eq!(parse_size("1GiB"), Ok(1 << 30));
    assert_eq!(parse_size("1048576"), Ok(1_048_576));
    assert_eq!(parse_size("100B"), Ok(100));
    for bad in [
        "",
        "MiB",
        "1.5MiB",
        "5XB",
        "0",
        "0MiB",
        "-1",
        "99999999999999999999GiB",
    ] {
        assert!(parse_size(bad).is_err(), "{bad:?} accepted");
    }

    let base = "hostname = \"a.example.com\"\n";
    let c = load_toml(&format!("{base}blob_limit = 1048576")).unwrap();
    assert_eq!(c.blob_limit, 1_048_576);
    let c = load_toml(&format!("{base}blob_limit = \"5MiB\"")).unwrap();
    assert_eq!(c.blob_limit, 5 * 1024 * 1024);
    let c = load(&dev(), &[("PERCH_BLOB_LIMIT", "5MB")], &[]).unwrap();
    assert_eq!(c.blob_limit, 5_000_000);

    for bad in [
        "blob_limit = -1",
        "blob_limit = 0",
        "blob_limit = \"lots\"",
        "blob_limit = 1.5",
    ] {
        let e = load_toml(&format!("{base}{bad}")).unwrap_err();
        assert_eq!(e.key, "blob_limit", "{bad}: {e}");
    }

    assert_eq!(format_size(100 * 1024 * 1024), "100MiB");
    assert_eq!(format_size(5_000_000), "5000000B");
    assert_eq!(parse_size(&format_size(3 << 30)), Ok(3 << 30));
}

#[test]
fn tls_files_needs_cert_and_key() {
    let base = "hostname = \"a.example.com\"\ntls = \"files\"\n";
    let e = load_toml(base).unwrap_err();
    assert_eq!(e.key, "tls_cert");
    assert!(e.message.contains("tls = \"files\""), "{e}");
    let e = load_toml(&format!("{base}tls_cert = \"/c.pem\"")).unwrap_err();
    assert_eq!(e.key, "tls_key");
    let c = load_toml(&format!(
        "{base}tls_cert = \"/c.pem\"\ntls_key = \"/k.pem\""
    ))
    .unwrap();
    assert_eq!(c.tls, TlsMode::Files);
    assert_eq!(c.tls_cert, Some(PathBuf::from("/c.pem")));
    assert_eq!(c.http_listen, None);
    assert_eq!(c.public_url(), "https://a.example.com");

    let e = load_toml("hostname = \"a.example.com\"\ntls = \"maybe\"").unwrap_err();
    assert_eq!(e.key, "tls");
}

#[test]
fn tls_default_follows_hostname() {
    let c = load_toml("hostname = \"perch.local\"").unwrap();
    assert_eq!(c.tls, TlsMode::Off);
    assert_eq!(c.listen, "[::]:80".parse().unwrap());
    assert_eq!(c.public_url(), "http://perch.local");
    let c = load_toml("hostname = \"localhost\"").unwrap();
    assert_eq!(c.tls, TlsMode::Off);

    let e = load_toml("hostname = \"perch.local\"\ntls = \"acme\"").unwrap_err();
    assert_eq!(e.key, "tls");
    assert!(e.message.contains("public DNS name"), "{e}");
}

#[test]
fn hostname_syntax() {
    let e = load_toml("hostname = \"pds.example.com:443\"").unwrap_err();
    assert_eq!(e.key, "hostname");
    assert!(e.message.contains("put the port in listen"), "{e}");
    let e = load_toml("hostname = \"127.0.0.1\"").unwrap_err();
    assert_eq!(e.key, "hostname");
    assert_eq!(e.origin.as_deref(), Some("/c.toml"));
}

#[test]
fn other_value_checks() {
    let base = "hostname = \"a.example.com\"\n";
    let cases = [
        ("http_listen = \"0.0.0.0:443\"", "http_listen"),
        ("appview_did = \"api.bsky.app\"", "appview_did"),
        ("chat_url = \"api.bsky.chat\"", "chat_url"),
        ("relays = [\"bsky.network\"]", "relays"),
        ("relays = [1]", "relays"),
        ("trusted_proxies = [\"10.0.0.0/8\"]", "trusted_proxies"),
        ("acme_email = \"nobody\"", "acme_email"),
        ("log = \"perch=[\"", "log"),
        ("log = \"warning\"", "log"),
        ("data_dir = \"\"", "data_dir"),
    ];
    for (line, key) in cases {
        let e = load_toml(&format!("{base}{line}")).unwrap_err();
        assert_eq!(e.key, key, "{line}: {e}");
        assert_eq!(e.origin.as_deref(), Some("/c.toml"), "{line}");
    }

    let c = load_toml(&format!(
        "{base}http_listen = \"\"\ntrusted_proxies = \"127.0.0.1, ::1\"\nplc_url = \"\""
    ))
    .unwrap();
    assert_eq!(c.http_listen, None);
    assert_eq!(c.plc_url, "");
    assert_eq!(
        c.trusted_proxies,
        vec![
            "127.0.0.1".parse::<IpAddr>().unwrap(),
            "::1".parse().unwrap()
        ]
    );

    let c = load(&dev(), &[("PERCH_ALLOW_LOOPBACK", "1")], &[]).unwrap();
    assert!(c.allow_loopback);
    let e = load(&dev(), &[("PERCH_ALLOW_LOOPBACK", "sure")], &[]).unwrap_err();
    assert_eq!(e.key, "PERCH_ALLOW_LOOPBACK");
}

#[test]
fn redacted_output_hides_admin_password() {
    let c = load(&dev(), &[("PERCH_ADMIN_PASSWORD", "hunter2-secret")], &[]).unwrap();
    assert_eq!(c.admin_password.as_deref(), Some("hunter2-secret"));
    let shown = c.redacted_toml();
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("admin_password = \"********\""), "{shown}");
    let debug = format!("{c:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
}

#[test]
fn redacted_toml_loads_back_to_the_same_config() {
    let file = "hostname = \"pds.example.com\"\n\
                data_dir = \"/srv/perch \\\"data\\\"\"\n\
                listen = \"[::]:8443\"\n\
                tls = \"files\"\n\
                tls_cert = \"/c.pem\"\n\
                tls_key = \"/k.pem\"\n\
                acme_email = \"me@example.com\"\n\
                relays = [\"https://a.example\", \"https://b.example\"]\n\
                blob_limit = \"5MB\"\n\
                log = \"perch=debug,info\"\n\
                trusted_proxies = [\"127.0.0.1\"]\n";
    let c = load_toml(file).unwrap();
    let again = load_toml(&c.redacted_toml()).unwrap();
    assert_eq!(c, again, "{}", c.redacted_toml());

    let d = Config::dev("/tmp/x");
    let args = Overrides {
        config_path: Some("/c.toml".into()),
        ..dev()
    };
    let shown = d.redacted_toml();
    let again = load(&args, &[], &[("/c.toml", shown.as_str())]).unwrap();
    assert_eq!(d, again, "{shown}");
}

#[test]
fn config_file_errors() {
    let e = load(&with_file("/nope/perch.toml"), &[], &[]).unwrap_err();
    assert_eq!(e.key, "--config");
    assert!(e.message.contains("/nope/perch.toml does not exist"), "{e}");

    // Also under --dev: an explicit file must exist.
    let args = Overrides {
        config_path: Some("/nope/perch.toml".into()),
        ..dev()
    };
    assert_eq!(load(&args, &[], &[]).unwrap_err().key, "--config");

    let denied =
        |_: &Path| -> io::Result<String> { Err(io::Error::from(io::ErrorKind::PermissionDenied)) };
    let e = Config::load_from(&Overrides::default(), &|_| None, &denied).unwrap_err();
    assert_eq!(e.key, DEFAULT_CONFIG_PATH);

    let e = load_toml("hostname = ").unwrap_err();
    assert_eq!(e.key, "/c.toml");
    assert!(e.message.starts_with("not valid TOML"), "{e}");
}

#[test]
fn public_url_forms() {
    let mut c = Config::dev("/tmp/x");
    assert_eq!(c.public_url(), "http://localhost:2583");
    c.listen = "127.0.0.1:80".parse().unwrap();
    assert_eq!(c.public_url(), "http://localhost");
    c.dev = false;
    c.tls = TlsMode::Acme;
    c.hostname = "pds.example.com".into();
    c.listen = "0.0.0.0:8443".parse().unwrap();
    assert_eq!(c.public_url(), "https://pds.example.com");
}

#[test]
fn toml_strings_are_escaped() {
    assert_eq!(toml_string("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
}

/// The shipped template shows every file key, commented out; test-only keys stay out of it.
#[test]
fn template_lists_every_file_key() {
    let template = include_str!("../../packaging/perch.toml");
    for key in keys::KEYS {
        let line = format!("\n#{} = ", key.name);
        assert_eq!(
            template.contains(&line),
            !key.test_only(),
            "{}: packaging/perch.toml must list every key but test-only ones",
            key.name
        );
    }
}

#[test]
fn key_names_are_unique_snake_case() {
    let mut seen = std::collections::BTreeSet::new();
    for key in keys::KEYS {
        assert!(seen.insert(key.name), "{} twice", key.name);
        assert!(
            key.name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{}",
            key.name
        );
        assert!(!key.summary().is_empty(), "{} has no doc", key.name);
    }
}

/// Each key's example is a correct value for it, and reads the same from the file and from
/// `PERCH_<KEY>` (list keys comma-separated there).
#[test]
fn examples_load_from_file_and_environment_alike() {
    for key in keys::KEYS {
        // A valid file around the key: a hostname, and backup_dir for backup_interval_hours.
        let base: String = [
            ("hostname", "\"base.example.com\""),
            ("backup_dir", "\"/b\""),
        ]
        .iter()
        .filter(|(name, _)| *name != key.name)
        .map(|(name, value)| format!("{name} = {value}\n"))
        .collect();
        let var = key.env_var();
        let from_env = if key.test_only() {
            key.example.to_owned()
        } else {
            let table: toml::Table = format!("v = {}", key.example).parse().unwrap();
            match &table["v"] {
                toml::Value::String(s) => s.clone(),
                toml::Value::Array(items) => {
                    let items: Vec<&str> = items.iter().filter_map(|i| i.as_str()).collect();
                    items.join(",")
                }
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => panic!("{}: example {other:?}", key.name),
            }
        };
        let env = [(var.as_str(), from_env.as_str())];
        let by_env = load(&with_file("/c.toml"), &env, &[("/c.toml", &base)])
            .unwrap_or_else(|e| panic!("{var}={from_env}: {e}"));
        if key.test_only() {
            assert!(
                by_env.redacted_toml().contains(&format!("# {var}=")),
                "{var}"
            );
            continue;
        }
        let file = format!("{base}{} = {}\n", key.name, key.example);
        let by_file = load_toml(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(by_file, by_env, "{}", key.name);
    }
}

/// Every key is read from `PERCH_<KEY>`, and every key but test-only ones from the file.
#[test]
fn every_key_has_its_variable_and_file_key() {
    for key in keys::KEYS {
        let var = key.env_var();
        assert_eq!(var, format!("PERCH_{}", key.name.to_ascii_uppercase()));
        let mut layers = layers::Layers::default();
        layers.apply_env(&|name| (name == var).then(String::new));
        assert!(layers.is_set(key.name), "{var}");

        let mut layers = layers::Layers::default();
        let file = layers.apply_file(Path::new("/c.toml"), &format!("{} = 1", key.name));
        assert_eq!(file.is_ok(), !key.test_only(), "{}", key.name);
        assert_eq!(layers.is_set(key.name), !key.test_only(), "{}", key.name);
    }
}
