//! The system side of the first boot: the files that switch on Wi-Fi and SSH, written
//! under a root directory (`/` on the Pi, a temporary directory in tests), and the units
//! to start when it runs on the live system.

use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use super::Wifi;

/// A file to write, path relative to the root.
#[derive(Debug, PartialEq)]
pub struct File {
    pub path: &'static str,
    pub mode: u32,
    pub contents: String,
}

/// A unit to enable (a `.wants` link under /etc) and start.
#[derive(Debug, PartialEq)]
pub struct Unit {
    pub name: &'static str,
    /// The unit file it is an instance or alias of.
    pub file: &'static str,
}

/// wpa_supplicant's interface; the image's networkd config asks DHCP on it.
const WIFI_CONF: &str = "etc/wpa_supplicant/wpa_supplicant-wlan0.conf";

pub fn wifi(w: &Wifi) -> (File, Unit) {
    let mut conf = String::from(
        "# Written by perch firstboot from perch.toml on the boot partition.\n\
         ctrl_interface=DIR=/run/wpa_supplicant GROUP=netdev\nupdate_config=0\n",
    );
    if let Some(cc) = &w.country {
        conf.push_str(&format!("country={cc}\n"));
    }
    // Hex form: any byte in an SSID, no quoting rules to get wrong.
    let ssid: String = w.ssid.bytes().map(|b| format!("{b:02x}")).collect();
    conf.push_str(&format!("network={{\n\tssid={ssid}\n\tscan_ssid=1\n"));
    match &w.password {
        // wpa_supplicant takes the passphrase up to the last quote; parse() refused
        // control characters, so the line cannot be broken.
        Some(p) => conf.push_str(&format!(
            "\tkey_mgmt=WPA-PSK SAE\n\tieee80211w=1\n\tpsk=\"{p}\"\n"
        )),
        None => conf.push_str("\tkey_mgmt=NONE\n"),
    }
    conf.push_str("}\n");
    (
        File {
            path: WIFI_CONF,
            mode: 0o600,
            contents: conf,
        },
        Unit {
            name: "wpa_supplicant@wlan0.service",
            file: "wpa_supplicant@.service",
        },
    )
}

pub fn ssh(keys: &[String]) -> (File, Unit) {
    let mut contents = String::from("# Written by perch firstboot from perch.toml.\n");
    for k in keys {
        contents.push_str(k);
        contents.push('\n');
    }
    (
        File {
            path: "root/.ssh/authorized_keys",
            mode: 0o600,
            contents,
        },
        Unit {
            name: "ssh.service",
            file: "ssh.service",
        },
    )
}

/// Writes `f` under `root` through a temporary file, synced: the card may lose power
/// at any moment of a first boot. Parent directories are made 0700 (~/.ssh must be).
pub fn write(root: &Path, f: &File) -> io::Result<()> {
    let path = root.join(f.path);
    let dir = path.parent().expect("relative path with a parent");
    if !dir.exists() {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    crate::fsutil::write_private(&path, f.contents.as_bytes())?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(f.mode))
}

/// Enables `u` the way `systemctl enable` would for a `WantedBy=multi-user.target` unit,
/// without needing a running systemd.
pub fn enable(root: &Path, u: &Unit) -> io::Result<()> {
    let wants = root.join("etc/systemd/system/multi-user.target.wants");
    std::fs::create_dir_all(&wants)?;
    let link = wants.join(u.name);
    let target = PathBuf::from("/usr/lib/systemd/system").join(u.file);
    match std::fs::symlink_metadata(&link) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => symlink(target, link),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wifi_config_quotes_nothing_it_need_not() {
        let (f, u) = wifi(&Wifi {
            ssid: "Home \"5G\"".into(),
            password: Some("p\"ss word".into()),
            country: Some("DE".into()),
        });
        assert_eq!(f.mode, 0o600);
        assert!(f.contents.contains("country=DE\n"));
        assert!(
            f.contents.contains("\tssid=486f6d652022354722\n"),
            "{}",
            f.contents
        );
        assert!(f.contents.contains("\tpsk=\"p\"ss word\"\n"));
        assert_eq!(u.name, "wpa_supplicant@wlan0.service");
        let (open, _) = wifi(&Wifi {
            ssid: "cafe".into(),
            password: None,
            country: None,
        });
        assert!(open.contents.contains("key_mgmt=NONE"));
        assert!(!open.contents.contains("country="));
    }

    #[test]
    fn files_and_links_land_under_the_root() {
        let root = tempfile::tempdir().unwrap();
        let (f, u) = ssh(&["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 me".into()]);
        write(root.path(), &f).unwrap();
        enable(root.path(), &u).unwrap();
        enable(root.path(), &u).unwrap(); // twice is fine: the second boot does it again
        let keys = root.path().join("root/.ssh/authorized_keys");
        assert!(
            std::fs::read_to_string(&keys)
                .unwrap()
                .contains("ssh-ed25519 AAAAC3")
        );
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&keys), 0o600);
        assert_eq!(mode(&root.path().join("root/.ssh")), 0o700);
        let link = root
            .path()
            .join("etc/systemd/system/multi-user.target.wants/ssh.service");
        assert_eq!(
            std::fs::read_link(link).unwrap(),
            PathBuf::from("/usr/lib/systemd/system/ssh.service")
        );
    }
}
