# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_perch_global_optspecs
    string join \n config= data-dir= listen= dev h/help V/version
end

function __fish_perch_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_perch_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_perch_using_subcommand
    set -l cmd (__fish_perch_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c perch -n "__fish_perch_needs_command" -l config -d 'Config file (default: /etc/perch/perch.toml if it exists; not read with --dev)' -r -F
complete -c perch -n "__fish_perch_needs_command" -l data-dir -d 'Data directory (overrides data_dir)' -r -F
complete -c perch -n "__fish_perch_needs_command" -l listen -d 'Listen address, e.g. [::]:443 (overrides listen)' -r
complete -c perch -n "__fish_perch_needs_command" -l dev -d 'Local development: plain HTTP on 127.0.0.1:2583, hostname localhost, ./perch-dev, no PLC'
complete -c perch -n "__fish_perch_needs_command" -s h -l help -d 'Print help'
complete -c perch -n "__fish_perch_needs_command" -s V -l version -d 'Print version'
complete -c perch -n "__fish_perch_needs_command" -f -a "init" -d 'First run: write the config, create the account, print the DNS and router setup'
complete -c perch -n "__fish_perch_needs_command" -f -a "serve" -d 'Run the server'
complete -c perch -n "__fish_perch_needs_command" -f -a "firstboot" -d 'SD-card image: apply perch.toml from the boot partition (run at boot, before perch)'
complete -c perch -n "__fish_perch_needs_command" -f -a "welcome" -d 'SD-card image: the setup page shown on the home network until perch is set up'
complete -c perch -n "__fish_perch_needs_command" -f -a "account" -d 'Manage the account'
complete -c perch -n "__fish_perch_needs_command" -f -a "config" -d 'Inspect the configuration'
complete -c perch -n "__fish_perch_needs_command" -f -a "status" -d 'Federation self-check: our head, the firehose, and what each relay knows about this repo'
complete -c perch -n "__fish_perch_needs_command" -f -a "request-crawl" -d 'Ask the configured relays to crawl this server now'
complete -c perch -n "__fish_perch_needs_command" -f -a "migrate" -d 'Move an account between PDSes'
complete -c perch -n "__fish_perch_needs_command" -f -a "doctor" -d 'Check DNS, listeners, certificate, clock, database, disk and identity; each line OK/WARN/FAIL with the fix'
complete -c perch -n "__fish_perch_needs_command" -f -a "seq" -d 'Firehose sequence numbers'
complete -c perch -n "__fish_perch_needs_command" -f -a "completions" -d 'Print the shell completion script (the .deb installs them; for a hand-installed binary: perch completions bash > /etc/bash_completion.d/perch)'
complete -c perch -n "__fish_perch_needs_command" -f -a "backup" -d 'Take a consistent backup while the server keeps running: database snapshot, blobs, keys and a manifest with checksums, in a new timestamped directory'
complete -c perch -n "__fish_perch_needs_command" -f -a "restore" -d 'Rebuild the data dir from a backup; every file is checked against the manifest first'
complete -c perch -n "__fish_perch_needs_command" -f -a "export" -d 'Write one tar archive with the repo (CAR), every blob and the preferences'
complete -c perch -n "__fish_perch_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c perch -n "__fish_perch_using_subcommand init" -l hostname -d 'The server\'s DNS name, e.g. pds.example.com' -r
complete -c perch -n "__fish_perch_using_subcommand init" -l handle -d 'The account\'s handle [default: the hostname, so one certificate covers both]' -r
complete -c perch -n "__fish_perch_using_subcommand init" -l acme-email -d 'Your email: the contact given to Let\'s Encrypt, and the account\'s email (codes go there when smtp_url is set)' -r
complete -c perch -n "__fish_perch_using_subcommand init" -l password -d 'The password (visible to other local users on the command line: prefer --password-stdin or PERCH_PASSWORD)' -r
complete -c perch -n "__fish_perch_using_subcommand init" -l password-hash -d 'An argon2id hash (PHC string, e.g. from the `argon2` tool) instead of the password' -r
complete -c perch -n "__fish_perch_using_subcommand init" -l did-method -d 'DID method [default: plc, or web when no PLC directory is configured]' -r -f -a "plc\t'did:plc, registered with the PLC directory'
web\t'did:web on the server\'s hostname'"
complete -c perch -n "__fish_perch_using_subcommand init" -l config -d 'Config file (default: /etc/perch/perch.toml if it exists; not read with --dev)' -r -F
complete -c perch -n "__fish_perch_using_subcommand init" -l data-dir -d 'Data directory (overrides data_dir)' -r -F
complete -c perch -n "__fish_perch_using_subcommand init" -l listen -d 'Listen address, e.g. [::]:443 (overrides listen)' -r
complete -c perch -n "__fish_perch_using_subcommand init" -l non-interactive -d 'Ask nothing: take the answers from the flags, the password from --password-stdin or PERCH_PASSWORD'
complete -c perch -n "__fish_perch_using_subcommand init" -l password-stdin -d 'Read the password from the first line of standard input'
complete -c perch -n "__fish_perch_using_subcommand init" -l force -d 'Replace a config file that already has settings (the old one is kept as FILE.old)'
complete -c perch -n "__fish_perch_using_subcommand init" -l dev -d 'Local development: plain HTTP on 127.0.0.1:2583, hostname localhost, ./perch-dev, no PLC'
complete -c perch -n "__fish_perch_using_subcommand init" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c perch -n "__fish_perch_using_subcommand serve" -l config -d 'Config file (default: /etc/perch/perch.toml if it exists; not read with --dev)' -r -F
complete -c perch -n "__fish_perch_using_subcommand serve" -l data-dir -d 'Data directory (overrides data_dir)' -r -F
complete -c perch -n "__fish_perch_using_subcommand serve" -l listen -d 'Listen address, e.g. [::]:443 (overrides listen)' -r
complete -c perch -n "__fish_perch_using_subcommand serve" -l dev -d 'Local development: plain HTTP on 127.0.0.1:2583, hostname localhost, ./perch-dev, no PLC'
complete -c perch -n "__fish_perch_using_subcommand serve" -s h -l help -d 'Print help'
complete -c perch -n "__fish_perch_using_subcommand firstboot" -l boot-dir -d 'The FAT boot partition that holds perch.toml' -r -F
complete -c perch -n "__fish_perch_using_subcommand firstboot" -l root -d 'Root of the system to configure; units are started only when it is /' -r -F
complete -c perch -n "__fish_perch_using_subcommand firstboot" -l config -d 'Config file (default: /etc/perch/perch.toml if it exists; not read with --dev)' -r -F
complete -c perch -n "__fish_perch_using_subcommand firstboot" -l data-dir -d 'Data directory (overrides data_dir)' -r -F
complete -c perch -n "__fish_perch_using_subcommand firstboot" -l listen -d 'Listen address, e.g. [::]:443 (overrides listen)' -r
complete -c perch -n "__fish_perch_using_subcommand firstboot" -l dev -d 'Local development: plain HTTP on 127.0.0.1:2583, hostname localhost, ./perch-dev, no PLC'
complete -c perch -n "__fish_perch_using_subcommand firstboot" -s h -l help -d 'Print help'
complete -c perch -n "__fish_perch_using_subcommand welcome" -l boot-dir -d 'The boot partition: its perch-setup.txt gets the setup code, its perch.toml the settings from the page' -r -F
complete -c perch -n "__fish_perch_using_subcommand welcome" -l run-dir -d 'Where the request to apply the settings is left for systemd (perch-setup.path)' -r -F
complete -c perch -n "__fish_perch_using_subcommand welcome" -l config -d 'Config file (default: /etc/perch/perch.toml if it exists; not read with --dev)' -r -F
complete -c perch -n "__fish_perch_using_subcommand welcome" -l data-dir -d 'Data directory (overrides data_dir)' -r -F
complete -c perch -n "__fish_perch_using_subcommand welcome" -l listen -d 'Listen address, e.g. [::]:443 (overrides listen)' -r
complete -c perch -n "__fish_perch_using_subcommand welcome" -l dev -d 'Local development: plain HTTP on 127.0.0.1:2583, hostname localhost, ./perch-dev, no PLC'
complete -c perch -n "__fish_perch_using_subcommand welcome" -s h -l help -d 'Print help'
complete -c perch -n "__fish_perch_using_subcommand account; and not __fish_seen_subcommand_from create set-password app-password apps plc-token invite show codes set-handle reset-password delete help" -l config -d 'Config file (default: /etc/perch/perch.toml if it exists; not read with --dev)' -r -F
complete -c perch -n "__fish_perch_using_subcommand account; and not __fish_seen_subcommand_from create set-password app-password apps plc-token invite show codes set-handle reset-password delete help" -l data-dir -d 'Data directory (overrides data_dir)' -r -F
complete -c perch -n "__fish_perch_using_subcommand account; and not __fish_seen_subcommand_from create set-password app-password apps plc-token invite show codes set-handle reset-password delete help" -l listen -d 'Listen address, e.g. [::]:443 (overrides listen)' -r
complete -c perch -n "__fish_perch_using_subcommand account; and not __fish_seen_subcommand_from create set-password app-password apps plc-token invite show codes set-handle reset-password delete help" -l dev -d 'Local development: plain HTTP on 127.0.0.1:2583, hostname localhost, ./perch-dev, no PLC'
complete -c perch -n "__fish_perch_using_subcommand account; and not __fish_seen_subcommand_from create set-password app-password apps plc-token invite show codes set-handle reset-password delete help" -s h -l help -d 'Print help'
complete -c perch -n "__fish_perch_using_subcommand account; and not __fish_seen_subcommand_from create set-password app-password apps plc-token invite show codes set-handle reset-password delete help" -f -a "create" -d 'Create the account (one per server)'
complete -c perch -n "__fish_perch_using_subcommand account; and not __fish_seen_subcommand_from create set-password app-password apps plc-token invite show codes set-handle reset-password delete help" -f -a "set-password" -d 'Change the login password and sign out every session and OAuth app (asks for the new password on the terminal)'
complete -c perch -n "__fish_perch_using_subcommand account; and not __fish_seen_subcommand_from create set-password app-password apps plc-token invite show codes set-handle reset-password delete help" -f -a "app-password" -d 'Manage app passwords'
complete -c perch -n "__fish_perch_using_subcommand account; and not __fish_seen_subcommand_from create set-password app-password apps plc-token invite show codes set-handle reset-password delete help" -f -a "apps" -d 'Apps signed in with OAuth ("Sign in with your handle"): list them, or end one'
complete -c perch -n "__fish_perch_using_subcommand account; and not __fish_seen_subcommand_from create set-password app-password apps plc-token invite show codes set-handle reset-password delete help" -f -a "plc-token" -d 'Print a one-time token (valid 1 h) for com.atproto.identity.signPlcOperation (what other servers send by email; needed to move the account away)'
complete -c perch -n "__fish_perch_using_subcommand account; and not __fish_seen_subcommand_from create set-password app-password apps plc-token invite show codes set-handle reset-password delete help" -f -a "invite" -d 'Print a one-time invite code (valid 7 days) that lets a migration tool create your account here with createAccount (`perch migrate in` makes its own)'
complete -c perch -n "__fish_perch_using_subcommand account; and not __fish_seen_subcommand_from create set-password app-password apps plc-token invite show codes set-handle reset-password delete help" -f -a "show" -d 'Show the account: handle, DID, email, status, app passwords, signed-in apps'
complete -c perch -n "__fish_perch_using_subcommand account; and not __fish_seen_subcommand_from create set-password app-password apps plc-token invite show codes set-handle reset-password delete help" -f -a "codes" -d 'Show the one-time codes waiting to be used (email confirmation, email change, password reset, account deletion, PLC operations): what other servers email'
complete -c perch -n "__fish_perch_using_subcommand account; and not __fish_seen_subcommand_from create set-password app-password apps plc-token invite show codes set-handle reset-password delete help" -f -a "set-handle" -d 'Change the handle (it must already point at the account\'s DID, unless it is this server\'s hostname); updates the PLC document and tells the network'
complete -c perch -n "__fish_perch_using_subcommand account; and not __fish_seen_subcommand_from create set-password app-password apps plc-token invite show codes set-handle reset-password delete help" -f -a "reset-password" -d 'Replace the password with a new random one, printed once, and sign out every session and OAuth app (for an owner locked out of the account)'
complete -c perch -n "__fish_perch_using_subcommand account; and not __fish_seen_subcommand_from create set-password app-password apps plc-token invite show codes set-handle reset-password delete help" -f -a "delete" -d 'Delete the account and everything it owns, for good (asks you to type the handle)'
complete -c perch -n "__fish_perch_using_subcommand account; and not __fish_seen_subcommand_from create set-password app-password apps plc-token invite show codes set-handle reset-password delete help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from create" -l handle -d 'Handle, e.g. alice.example.com' -r
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from create" -l password -d 'Login password, at least 8 characters (visible to other local users: prefer the prompt or --password-stdin)' -r
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from create" -l email -d 'Contact email' -r
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from create" -l did-method -d 'DID method [default: plc, or web when no PLC directory is configured]' -r -f -a "plc\t'did:plc, registered with the PLC directory'
web\t'did:web on the server\'s hostname'"
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from create" -l config -d 'Config file (default: /etc/perch/perch.toml if it exists; not read with --dev)' -r -F
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from create" -l data-dir -d 'Data directory (overrides data_dir)' -r -F
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from create" -l listen -d 'Listen address, e.g. [::]:443 (overrides listen)' -r
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from create" -l password-stdin -d 'Read the password from the first line of standard input'
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from create" -l dev -d 'Local development: plain HTTP on 127.0.0.1:2583, hostname localhost, ./perch-dev, no PLC'
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from set-password" -l password -d 'New password (visible to other local users: prefer the prompt or --password-stdin)' -r
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from set-password" -l config -d 'Config file (default: /etc/perch/perch.toml if it exists; not read with --dev)' -r -F
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from set-password" -l data-dir -d 'Data directory (overrides data_dir)' -r -F
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from set-password" -l listen -d 'Listen address, e.g. [::]:443 (overrides listen)' -r
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from set-password" -l password-stdin -d 'Read the new password from the first line of standard input'
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from set-password" -l revoke-app-passwords -d 'Also delete every app password (each app then needs a new one)'
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from set-password" -l dev -d 'Local development: plain HTTP on 127.0.0.1:2583, hostname localhost, ./perch-dev, no PLC'
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from set-password" -s h -l help -d 'Print help'
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from app-password" -l config -d 'Config file (default: /etc/perch/perch.toml if it exists; not read with --dev)' -r -F
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from app-password" -l data-dir -d 'Data directory (overrides data_dir)' -r -F
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from app-password" -l listen -d 'Listen address, e.g. [::]:443 (overrides listen)' -r
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from app-password" -l dev -d 'Local development: plain HTTP on 127.0.0.1:2583, hostname localhost, ./perch-dev, no PLC'
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from app-password" -s h -l help -d 'Print help'
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from app-password" -f -a "create" -d 'Create an app password and print it'
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from app-password" -f -a "list" -d 'List app passwords'
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from app-password" -f -a "revoke" -d 'Revoke an app password'
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from app-password" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from apps" -l config -d 'Config file (default: /etc/perch/perch.toml if it exists; not read with --dev)' -r -F
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from apps" -l data-dir -d 'Data directory (overrides data_dir)' -r -F
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from apps" -l listen -d 'Listen address, e.g. [::]:443 (overrides listen)' -r
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from apps" -l dev -d 'Local development: plain HTTP on 127.0.0.1:2583, hostname localhost, ./perch-dev, no PLC'
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from apps" -s h -l help -d 'Print help'
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from apps" -f -a "list" -d 'List the signed-in apps (the default)'
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from apps" -f -a "revoke" -d 'Sign an app out at once: its tokens stop working, and it must ask again'
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from apps" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from plc-token" -l config -d 'Config file (default: /etc/perch/perch.toml if it exists; not read with --dev)' -r -F
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from plc-token" -l data-dir -d 'Data directory (overrides data_dir)' -r -F
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from plc-token" -l listen -d 'Listen address, e.g. [::]:443 (overrides listen)' -r
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from plc-token" -l dev -d 'Local development: plain HTTP on 127.0.0.1:2583, hostname localhost, ./perch-dev, no PLC'
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from plc-token" -s h -l help -d 'Print help'
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from invite" -l config -d 'Config file (default: /etc/perch/perch.toml if it exists; not read with --dev)' -r -F
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from invite" -l data-dir -d 'Data directory (overrides data_dir)' -r -F
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from invite" -l listen -d 'Listen address, e.g. [::]:443 (overrides listen)' -r
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from invite" -l dev -d 'Local development: plain HTTP on 127.0.0.1:2583, hostname localhost, ./perch-dev, no PLC'
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from invite" -s h -l help -d 'Print help'
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from show" -l config -d 'Config file (default: /etc/perch/perch.toml if it exists; not read with --dev)' -r -F
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from show" -l data-dir -d 'Data directory (overrides data_dir)' -r -F
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from show" -l listen -d 'Listen address, e.g. [::]:443 (overrides listen)' -r
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from show" -l dev -d 'Local development: plain HTTP on 127.0.0.1:2583, hostname localhost, ./perch-dev, no PLC'
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from codes" -l config -d 'Config file (default: /etc/perch/perch.toml if it exists; not read with --dev)' -r -F
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from codes" -l data-dir -d 'Data directory (overrides data_dir)' -r -F
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from codes" -l listen -d 'Listen address, e.g. [::]:443 (overrides listen)' -r
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from codes" -l dev -d 'Local development: plain HTTP on 127.0.0.1:2583, hostname localhost, ./perch-dev, no PLC'
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from codes" -s h -l help -d 'Print help'
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from set-handle" -l config -d 'Config file (default: /etc/perch/perch.toml if it exists; not read with --dev)' -r -F
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from set-handle" -l data-dir -d 'Data directory (overrides data_dir)' -r -F
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from set-handle" -l listen -d 'Listen address, e.g. [::]:443 (overrides listen)' -r
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from set-handle" -l dev -d 'Local development: plain HTTP on 127.0.0.1:2583, hostname localhost, ./perch-dev, no PLC'
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from set-handle" -s h -l help -d 'Print help'
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from reset-password" -l config -d 'Config file (default: /etc/perch/perch.toml if it exists; not read with --dev)' -r -F
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from reset-password" -l data-dir -d 'Data directory (overrides data_dir)' -r -F
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from reset-password" -l listen -d 'Listen address, e.g. [::]:443 (overrides listen)' -r
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from reset-password" -l dev -d 'Local development: plain HTTP on 127.0.0.1:2583, hostname localhost, ./perch-dev, no PLC'
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from reset-password" -s h -l help -d 'Print help'
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from delete" -l confirm -d 'The account\'s handle, to confirm without a prompt' -r
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from delete" -l config -d 'Config file (default: /etc/perch/perch.toml if it exists; not read with --dev)' -r -F
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from delete" -l data-dir -d 'Data directory (overrides data_dir)' -r -F
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from delete" -l listen -d 'Listen address, e.g. [::]:443 (overrides listen)' -r
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from delete" -l dev -d 'Local development: plain HTTP on 127.0.0.1:2583, hostname localhost, ./perch-dev, no PLC'
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from delete" -s h -l help -d 'Print help'
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from help" -f -a "create" -d 'Create the account (one per server)'
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from help" -f -a "set-password" -d 'Change the login password and sign out every session and OAuth app (asks for the new password on the terminal)'
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from help" -f -a "app-password" -d 'Manage app passwords'
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from help" -f -a "apps" -d 'Apps signed in with OAuth ("Sign in with your handle"): list them, or end one'
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from help" -f -a "plc-token" -d 'Print a one-time token (valid 1 h) for com.atproto.identity.signPlcOperation (what other servers send by email; needed to move the account away)'
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from help" -f -a "invite" -d 'Print a one-time invite code (valid 7 days) that lets a migration tool create your account here with createAccount (`perch migrate in` makes its own)'
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show the account: handle, DID, email, status, app passwords, signed-in apps'
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from help" -f -a "codes" -d 'Show the one-time codes waiting to be used (email confirmation, email change, password reset, account deletion, PLC operations): what other servers email'
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from help" -f -a "set-handle" -d 'Change the handle (it must already point at the account\'s DID, unless it is this server\'s hostname); updates the PLC document and tells the network'
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from help" -f -a "reset-password" -d 'Replace the password with a new random one, printed once, and sign out every session and OAuth app (for an owner locked out of the account)'
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from help" -f -a "delete" -d 'Delete the account and everything it owns, for good (asks you to type the handle)'
complete -c perch -n "__fish_perch_using_subcommand account; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c perch -n "__fish_perch_using_subcommand config; and not __fish_seen_subcommand_from check show help" -l config -d 'Config file (default: /etc/perch/perch.toml if it exists; not read with --dev)' -r -F
complete -c perch -n "__fish_perch_using_subcommand config; and not __fish_seen_subcommand_from check show help" -l data-dir -d 'Data directory (overrides data_dir)' -r -F
complete -c perch -n "__fish_perch_using_subcommand config; and not __fish_seen_subcommand_from check show help" -l listen -d 'Listen address, e.g. [::]:443 (overrides listen)' -r
complete -c perch -n "__fish_perch_using_subcommand config; and not __fish_seen_subcommand_from check show help" -l dev -d 'Local development: plain HTTP on 127.0.0.1:2583, hostname localhost, ./perch-dev, no PLC'
complete -c perch -n "__fish_perch_using_subcommand config; and not __fish_seen_subcommand_from check show help" -s h -l help -d 'Print help'
complete -c perch -n "__fish_perch_using_subcommand config; and not __fish_seen_subcommand_from check show help" -f -a "check" -d 'Load and validate the configuration, then print the key facts'
complete -c perch -n "__fish_perch_using_subcommand config; and not __fish_seen_subcommand_from check show help" -f -a "show" -d 'Print the effective configuration as TOML (secrets hidden)'
complete -c perch -n "__fish_perch_using_subcommand config; and not __fish_seen_subcommand_from check show help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c perch -n "__fish_perch_using_subcommand config; and __fish_seen_subcommand_from check" -l config -d 'Config file (default: /etc/perch/perch.toml if it exists; not read with --dev)' -r -F
complete -c perch -n "__fish_perch_using_subcommand config; and __fish_seen_subcommand_from check" -l data-dir -d 'Data directory (overrides data_dir)' -r -F
complete -c perch -n "__fish_perch_using_subcommand config; and __fish_seen_subcommand_from check" -l listen -d 'Listen address, e.g. [::]:443 (overrides listen)' -r
complete -c perch -n "__fish_perch_using_subcommand config; and __fish_seen_subcommand_from check" -l dev -d 'Local development: plain HTTP on 127.0.0.1:2583, hostname localhost, ./perch-dev, no PLC'
complete -c perch -n "__fish_perch_using_subcommand config; and __fish_seen_subcommand_from check" -s h -l help -d 'Print help'
complete -c perch -n "__fish_perch_using_subcommand config; and __fish_seen_subcommand_from show" -l config -d 'Config file (default: /etc/perch/perch.toml if it exists; not read with --dev)' -r -F
complete -c perch -n "__fish_perch_using_subcommand config; and __fish_seen_subcommand_from show" -l data-dir -d 'Data directory (overrides data_dir)' -r -F
complete -c perch -n "__fish_perch_using_subcommand config; and __fish_seen_subcommand_from show" -l listen -d 'Listen address, e.g. [::]:443 (overrides listen)' -r
complete -c perch -n "__fish_perch_using_subcommand config; and __fish_seen_subcommand_from show" -l dev -d 'Local development: plain HTTP on 127.0.0.1:2583, hostname localhost, ./perch-dev, no PLC'
complete -c perch -n "__fish_perch_using_subcommand config; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c perch -n "__fish_perch_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "check" -d 'Load and validate the configuration, then print the key facts'
complete -c perch -n "__fish_perch_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "show" -d 'Print the effective configuration as TOML (secrets hidden)'
complete -c perch -n "__fish_perch_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c perch -n "__fish_perch_using_subcommand status" -l config -d 'Config file (default: /etc/perch/perch.toml if it exists; not read with --dev)' -r -F
complete -c perch -n "__fish_perch_using_subcommand status" -l data-dir -d 'Data directory (overrides data_dir)' -r -F
complete -c perch -n "__fish_perch_using_subcommand status" -l listen -d 'Listen address, e.g. [::]:443 (overrides listen)' -r
complete -c perch -n "__fish_perch_using_subcommand status" -l dev -d 'Local development: plain HTTP on 127.0.0.1:2583, hostname localhost, ./perch-dev, no PLC'
complete -c perch -n "__fish_perch_using_subcommand status" -s h -l help -d 'Print help'
complete -c perch -n "__fish_perch_using_subcommand request-crawl" -l config -d 'Config file (default: /etc/perch/perch.toml if it exists; not read with --dev)' -r -F
complete -c perch -n "__fish_perch_using_subcommand request-crawl" -l data-dir -d 'Data directory (overrides data_dir)' -r -F
complete -c perch -n "__fish_perch_using_subcommand request-crawl" -l listen -d 'Listen address, e.g. [::]:443 (overrides listen)' -r
complete -c perch -n "__fish_perch_using_subcommand request-crawl" -l dev -d 'Local development: plain HTTP on 127.0.0.1:2583, hostname localhost, ./perch-dev, no PLC'
complete -c perch -n "__fish_perch_using_subcommand request-crawl" -s h -l help -d 'Print help'
complete -c perch -n "__fish_perch_using_subcommand migrate; and not __fish_seen_subcommand_from in out help" -l config -d 'Config file (default: /etc/perch/perch.toml if it exists; not read with --dev)' -r -F
complete -c perch -n "__fish_perch_using_subcommand migrate; and not __fish_seen_subcommand_from in out help" -l data-dir -d 'Data directory (overrides data_dir)' -r -F
complete -c perch -n "__fish_perch_using_subcommand migrate; and not __fish_seen_subcommand_from in out help" -l listen -d 'Listen address, e.g. [::]:443 (overrides listen)' -r
complete -c perch -n "__fish_perch_using_subcommand migrate; and not __fish_seen_subcommand_from in out help" -l dev -d 'Local development: plain HTTP on 127.0.0.1:2583, hostname localhost, ./perch-dev, no PLC'
complete -c perch -n "__fish_perch_using_subcommand migrate; and not __fish_seen_subcommand_from in out help" -s h -l help -d 'Print help'
complete -c perch -n "__fish_perch_using_subcommand migrate; and not __fish_seen_subcommand_from in out help" -f -a "in" -d 'Move your account from another PDS to this one (run it again to continue after an interruption)'
complete -c perch -n "__fish_perch_using_subcommand migrate; and not __fish_seen_subcommand_from in out help" -f -a "out" -d 'Move this server\'s account to another PDS (run it again to continue after an interruption)'
complete -c perch -n "__fish_perch_using_subcommand migrate; and not __fish_seen_subcommand_from in out help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c perch -n "__fish_perch_using_subcommand migrate; and __fish_seen_subcommand_from in" -l from -d 'Your handle or DID' -r
complete -c perch -n "__fish_perch_using_subcommand migrate; and __fish_seen_subcommand_from in" -l password -d 'Your password on the old PDS (visible to other local users: prefer the prompt, --password-stdin or PERCH_OLD_PASSWORD)' -r
complete -c perch -n "__fish_perch_using_subcommand migrate; and __fish_seen_subcommand_from in" -l old-pds -d 'The old PDS\'s URL, if not the one in your DID document' -r
complete -c perch -n "__fish_perch_using_subcommand migrate; and __fish_seen_subcommand_from in" -l to -d 'This server\'s URL (default: its public URL)' -r
complete -c perch -n "__fish_perch_using_subcommand migrate; and __fish_seen_subcommand_from in" -l plc-token -d 'The confirmation code the old PDS emailed you (second run)' -r
complete -c perch -n "__fish_perch_using_subcommand migrate; and __fish_seen_subcommand_from in" -l config -d 'Config file (default: /etc/perch/perch.toml if it exists; not read with --dev)' -r -F
complete -c perch -n "__fish_perch_using_subcommand migrate; and __fish_seen_subcommand_from in" -l data-dir -d 'Data directory (overrides data_dir)' -r -F
complete -c perch -n "__fish_perch_using_subcommand migrate; and __fish_seen_subcommand_from in" -l listen -d 'Listen address, e.g. [::]:443 (overrides listen)' -r
complete -c perch -n "__fish_perch_using_subcommand migrate; and __fish_seen_subcommand_from in" -l password-stdin -d 'Read the password from the first line of standard input'
complete -c perch -n "__fish_perch_using_subcommand migrate; and __fish_seen_subcommand_from in" -l dev -d 'Local development: plain HTTP on 127.0.0.1:2583, hostname localhost, ./perch-dev, no PLC'
complete -c perch -n "__fish_perch_using_subcommand migrate; and __fish_seen_subcommand_from in" -s h -l help -d 'Print help'
complete -c perch -n "__fish_perch_using_subcommand migrate; and __fish_seen_subcommand_from out" -l to -d 'The PDS to move to, e.g. https://pds.example.net' -r
complete -c perch -n "__fish_perch_using_subcommand migrate; and __fish_seen_subcommand_from out" -l password -d 'Your password here; the new account gets it too (visible to other local users: prefer the prompt, --password-stdin or PERCH_PASSWORD)' -r
complete -c perch -n "__fish_perch_using_subcommand migrate; and __fish_seen_subcommand_from out" -l handle -d 'Handle on the new PDS (default: your current handle)' -r
complete -c perch -n "__fish_perch_using_subcommand migrate; and __fish_seen_subcommand_from out" -l email -d 'Email for the new account (default: the one here, if any)' -r
complete -c perch -n "__fish_perch_using_subcommand migrate; and __fish_seen_subcommand_from out" -l invite-code -d 'Invite code, if the new PDS requires one' -r
complete -c perch -n "__fish_perch_using_subcommand migrate; and __fish_seen_subcommand_from out" -l from -d 'This server\'s URL (default: its public URL)' -r
complete -c perch -n "__fish_perch_using_subcommand migrate; and __fish_seen_subcommand_from out" -l config -d 'Config file (default: /etc/perch/perch.toml if it exists; not read with --dev)' -r -F
complete -c perch -n "__fish_perch_using_subcommand migrate; and __fish_seen_subcommand_from out" -l data-dir -d 'Data directory (overrides data_dir)' -r -F
complete -c perch -n "__fish_perch_using_subcommand migrate; and __fish_seen_subcommand_from out" -l listen -d 'Listen address, e.g. [::]:443 (overrides listen)' -r
complete -c perch -n "__fish_perch_using_subcommand migrate; and __fish_seen_subcommand_from out" -l password-stdin -d 'Read the password from the first line of standard input'
complete -c perch -n "__fish_perch_using_subcommand migrate; and __fish_seen_subcommand_from out" -l dev -d 'Local development: plain HTTP on 127.0.0.1:2583, hostname localhost, ./perch-dev, no PLC'
complete -c perch -n "__fish_perch_using_subcommand migrate; and __fish_seen_subcommand_from out" -s h -l help -d 'Print help'
complete -c perch -n "__fish_perch_using_subcommand migrate; and __fish_seen_subcommand_from help" -f -a "in" -d 'Move your account from another PDS to this one (run it again to continue after an interruption)'
complete -c perch -n "__fish_perch_using_subcommand migrate; and __fish_seen_subcommand_from help" -f -a "out" -d 'Move this server\'s account to another PDS (run it again to continue after an interruption)'
complete -c perch -n "__fish_perch_using_subcommand migrate; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c perch -n "__fish_perch_using_subcommand doctor" -l config -d 'Config file (default: /etc/perch/perch.toml if it exists; not read with --dev)' -r -F
complete -c perch -n "__fish_perch_using_subcommand doctor" -l data-dir -d 'Data directory (overrides data_dir)' -r -F
complete -c perch -n "__fish_perch_using_subcommand doctor" -l listen -d 'Listen address, e.g. [::]:443 (overrides listen)' -r
complete -c perch -n "__fish_perch_using_subcommand doctor" -l dev -d 'Local development: plain HTTP on 127.0.0.1:2583, hostname localhost, ./perch-dev, no PLC'
complete -c perch -n "__fish_perch_using_subcommand doctor" -s h -l help -d 'Print help'
complete -c perch -n "__fish_perch_using_subcommand seq; and not __fish_seen_subcommand_from bump help" -l config -d 'Config file (default: /etc/perch/perch.toml if it exists; not read with --dev)' -r -F
complete -c perch -n "__fish_perch_using_subcommand seq; and not __fish_seen_subcommand_from bump help" -l data-dir -d 'Data directory (overrides data_dir)' -r -F
complete -c perch -n "__fish_perch_using_subcommand seq; and not __fish_seen_subcommand_from bump help" -l listen -d 'Listen address, e.g. [::]:443 (overrides listen)' -r
complete -c perch -n "__fish_perch_using_subcommand seq; and not __fish_seen_subcommand_from bump help" -l dev -d 'Local development: plain HTTP on 127.0.0.1:2583, hostname localhost, ./perch-dev, no PLC'
complete -c perch -n "__fish_perch_using_subcommand seq; and not __fish_seen_subcommand_from bump help" -s h -l help -d 'Print help'
complete -c perch -n "__fish_perch_using_subcommand seq; and not __fish_seen_subcommand_from bump help" -f -a "bump" -d 'Move the sequence forward so the next event gets at least N (after restoring an old backup, relays must never see a seq twice)'
complete -c perch -n "__fish_perch_using_subcommand seq; and not __fish_seen_subcommand_from bump help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c perch -n "__fish_perch_using_subcommand seq; and __fish_seen_subcommand_from bump" -l to -d 'the next seq to use' -r
complete -c perch -n "__fish_perch_using_subcommand seq; and __fish_seen_subcommand_from bump" -l config -d 'Config file (default: /etc/perch/perch.toml if it exists; not read with --dev)' -r -F
complete -c perch -n "__fish_perch_using_subcommand seq; and __fish_seen_subcommand_from bump" -l data-dir -d 'Data directory (overrides data_dir)' -r -F
complete -c perch -n "__fish_perch_using_subcommand seq; and __fish_seen_subcommand_from bump" -l listen -d 'Listen address, e.g. [::]:443 (overrides listen)' -r
complete -c perch -n "__fish_perch_using_subcommand seq; and __fish_seen_subcommand_from bump" -l dev -d 'Local development: plain HTTP on 127.0.0.1:2583, hostname localhost, ./perch-dev, no PLC'
complete -c perch -n "__fish_perch_using_subcommand seq; and __fish_seen_subcommand_from bump" -s h -l help -d 'Print help'
complete -c perch -n "__fish_perch_using_subcommand seq; and __fish_seen_subcommand_from help" -f -a "bump" -d 'Move the sequence forward so the next event gets at least N (after restoring an old backup, relays must never see a seq twice)'
complete -c perch -n "__fish_perch_using_subcommand seq; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c perch -n "__fish_perch_using_subcommand completions" -l config -d 'Config file (default: /etc/perch/perch.toml if it exists; not read with --dev)' -r -F
complete -c perch -n "__fish_perch_using_subcommand completions" -l data-dir -d 'Data directory (overrides data_dir)' -r -F
complete -c perch -n "__fish_perch_using_subcommand completions" -l listen -d 'Listen address, e.g. [::]:443 (overrides listen)' -r
complete -c perch -n "__fish_perch_using_subcommand completions" -l dev -d 'Local development: plain HTTP on 127.0.0.1:2583, hostname localhost, ./perch-dev, no PLC'
complete -c perch -n "__fish_perch_using_subcommand completions" -s h -l help -d 'Print help'
complete -c perch -n "__fish_perch_using_subcommand backup" -l keep -d 'Afterwards, delete all but the newest N backups there' -r
complete -c perch -n "__fish_perch_using_subcommand backup" -l config -d 'Config file (default: /etc/perch/perch.toml if it exists; not read with --dev)' -r -F
complete -c perch -n "__fish_perch_using_subcommand backup" -l data-dir -d 'Data directory (overrides data_dir)' -r -F
complete -c perch -n "__fish_perch_using_subcommand backup" -l listen -d 'Listen address, e.g. [::]:443 (overrides listen)' -r
complete -c perch -n "__fish_perch_using_subcommand backup" -l dev -d 'Local development: plain HTTP on 127.0.0.1:2583, hostname localhost, ./perch-dev, no PLC'
complete -c perch -n "__fish_perch_using_subcommand backup" -s h -l help -d 'Print help'
complete -c perch -n "__fish_perch_using_subcommand restore" -l seq-floor -d 'Continue firehose seqs at N, above any seq the old server used (otherwise `perch seq bump` must be run before `perch serve` starts)' -r
complete -c perch -n "__fish_perch_using_subcommand restore" -l config -d 'Config file (default: /etc/perch/perch.toml if it exists; not read with --dev)' -r -F
complete -c perch -n "__fish_perch_using_subcommand restore" -l data-dir -d 'Data directory (overrides data_dir)' -r -F
complete -c perch -n "__fish_perch_using_subcommand restore" -l listen -d 'Listen address, e.g. [::]:443 (overrides listen)' -r
complete -c perch -n "__fish_perch_using_subcommand restore" -l force -d 'Restore into a non-empty data dir (what is there is moved into .replaced-<time>/)'
complete -c perch -n "__fish_perch_using_subcommand restore" -l dev -d 'Local development: plain HTTP on 127.0.0.1:2583, hostname localhost, ./perch-dev, no PLC'
complete -c perch -n "__fish_perch_using_subcommand restore" -s h -l help -d 'Print help'
complete -c perch -n "__fish_perch_using_subcommand export" -l config -d 'Config file (default: /etc/perch/perch.toml if it exists; not read with --dev)' -r -F
complete -c perch -n "__fish_perch_using_subcommand export" -l data-dir -d 'Data directory (overrides data_dir)' -r -F
complete -c perch -n "__fish_perch_using_subcommand export" -l listen -d 'Listen address, e.g. [::]:443 (overrides listen)' -r
complete -c perch -n "__fish_perch_using_subcommand export" -l dev -d 'Local development: plain HTTP on 127.0.0.1:2583, hostname localhost, ./perch-dev, no PLC'
complete -c perch -n "__fish_perch_using_subcommand export" -s h -l help -d 'Print help'
complete -c perch -n "__fish_perch_using_subcommand help; and not __fish_seen_subcommand_from init serve firstboot welcome account config status request-crawl migrate doctor seq completions backup restore export help" -f -a "init" -d 'First run: write the config, create the account, print the DNS and router setup'
complete -c perch -n "__fish_perch_using_subcommand help; and not __fish_seen_subcommand_from init serve firstboot welcome account config status request-crawl migrate doctor seq completions backup restore export help" -f -a "serve" -d 'Run the server'
complete -c perch -n "__fish_perch_using_subcommand help; and not __fish_seen_subcommand_from init serve firstboot welcome account config status request-crawl migrate doctor seq completions backup restore export help" -f -a "firstboot" -d 'SD-card image: apply perch.toml from the boot partition (run at boot, before perch)'
complete -c perch -n "__fish_perch_using_subcommand help; and not __fish_seen_subcommand_from init serve firstboot welcome account config status request-crawl migrate doctor seq completions backup restore export help" -f -a "welcome" -d 'SD-card image: the setup page shown on the home network until perch is set up'
complete -c perch -n "__fish_perch_using_subcommand help; and not __fish_seen_subcommand_from init serve firstboot welcome account config status request-crawl migrate doctor seq completions backup restore export help" -f -a "account" -d 'Manage the account'
complete -c perch -n "__fish_perch_using_subcommand help; and not __fish_seen_subcommand_from init serve firstboot welcome account config status request-crawl migrate doctor seq completions backup restore export help" -f -a "config" -d 'Inspect the configuration'
complete -c perch -n "__fish_perch_using_subcommand help; and not __fish_seen_subcommand_from init serve firstboot welcome account config status request-crawl migrate doctor seq completions backup restore export help" -f -a "status" -d 'Federation self-check: our head, the firehose, and what each relay knows about this repo'
complete -c perch -n "__fish_perch_using_subcommand help; and not __fish_seen_subcommand_from init serve firstboot welcome account config status request-crawl migrate doctor seq completions backup restore export help" -f -a "request-crawl" -d 'Ask the configured relays to crawl this server now'
complete -c perch -n "__fish_perch_using_subcommand help; and not __fish_seen_subcommand_from init serve firstboot welcome account config status request-crawl migrate doctor seq completions backup restore export help" -f -a "migrate" -d 'Move an account between PDSes'
complete -c perch -n "__fish_perch_using_subcommand help; and not __fish_seen_subcommand_from init serve firstboot welcome account config status request-crawl migrate doctor seq completions backup restore export help" -f -a "doctor" -d 'Check DNS, listeners, certificate, clock, database, disk and identity; each line OK/WARN/FAIL with the fix'
complete -c perch -n "__fish_perch_using_subcommand help; and not __fish_seen_subcommand_from init serve firstboot welcome account config status request-crawl migrate doctor seq completions backup restore export help" -f -a "seq" -d 'Firehose sequence numbers'
complete -c perch -n "__fish_perch_using_subcommand help; and not __fish_seen_subcommand_from init serve firstboot welcome account config status request-crawl migrate doctor seq completions backup restore export help" -f -a "completions" -d 'Print the shell completion script (the .deb installs them; for a hand-installed binary: perch completions bash > /etc/bash_completion.d/perch)'
complete -c perch -n "__fish_perch_using_subcommand help; and not __fish_seen_subcommand_from init serve firstboot welcome account config status request-crawl migrate doctor seq completions backup restore export help" -f -a "backup" -d 'Take a consistent backup while the server keeps running: database snapshot, blobs, keys and a manifest with checksums, in a new timestamped directory'
complete -c perch -n "__fish_perch_using_subcommand help; and not __fish_seen_subcommand_from init serve firstboot welcome account config status request-crawl migrate doctor seq completions backup restore export help" -f -a "restore" -d 'Rebuild the data dir from a backup; every file is checked against the manifest first'
complete -c perch -n "__fish_perch_using_subcommand help; and not __fish_seen_subcommand_from init serve firstboot welcome account config status request-crawl migrate doctor seq completions backup restore export help" -f -a "export" -d 'Write one tar archive with the repo (CAR), every blob and the preferences'
complete -c perch -n "__fish_perch_using_subcommand help; and not __fish_seen_subcommand_from init serve firstboot welcome account config status request-crawl migrate doctor seq completions backup restore export help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c perch -n "__fish_perch_using_subcommand help; and __fish_seen_subcommand_from account" -f -a "create" -d 'Create the account (one per server)'
complete -c perch -n "__fish_perch_using_subcommand help; and __fish_seen_subcommand_from account" -f -a "set-password" -d 'Change the login password and sign out every session and OAuth app (asks for the new password on the terminal)'
complete -c perch -n "__fish_perch_using_subcommand help; and __fish_seen_subcommand_from account" -f -a "app-password" -d 'Manage app passwords'
complete -c perch -n "__fish_perch_using_subcommand help; and __fish_seen_subcommand_from account" -f -a "apps" -d 'Apps signed in with OAuth ("Sign in with your handle"): list them, or end one'
complete -c perch -n "__fish_perch_using_subcommand help; and __fish_seen_subcommand_from account" -f -a "plc-token" -d 'Print a one-time token (valid 1 h) for com.atproto.identity.signPlcOperation (what other servers send by email; needed to move the account away)'
complete -c perch -n "__fish_perch_using_subcommand help; and __fish_seen_subcommand_from account" -f -a "invite" -d 'Print a one-time invite code (valid 7 days) that lets a migration tool create your account here with createAccount (`perch migrate in` makes its own)'
complete -c perch -n "__fish_perch_using_subcommand help; and __fish_seen_subcommand_from account" -f -a "show" -d 'Show the account: handle, DID, email, status, app passwords, signed-in apps'
complete -c perch -n "__fish_perch_using_subcommand help; and __fish_seen_subcommand_from account" -f -a "codes" -d 'Show the one-time codes waiting to be used (email confirmation, email change, password reset, account deletion, PLC operations): what other servers email'
complete -c perch -n "__fish_perch_using_subcommand help; and __fish_seen_subcommand_from account" -f -a "set-handle" -d 'Change the handle (it must already point at the account\'s DID, unless it is this server\'s hostname); updates the PLC document and tells the network'
complete -c perch -n "__fish_perch_using_subcommand help; and __fish_seen_subcommand_from account" -f -a "reset-password" -d 'Replace the password with a new random one, printed once, and sign out every session and OAuth app (for an owner locked out of the account)'
complete -c perch -n "__fish_perch_using_subcommand help; and __fish_seen_subcommand_from account" -f -a "delete" -d 'Delete the account and everything it owns, for good (asks you to type the handle)'
complete -c perch -n "__fish_perch_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "check" -d 'Load and validate the configuration, then print the key facts'
complete -c perch -n "__fish_perch_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "show" -d 'Print the effective configuration as TOML (secrets hidden)'
complete -c perch -n "__fish_perch_using_subcommand help; and __fish_seen_subcommand_from migrate" -f -a "in" -d 'Move your account from another PDS to this one (run it again to continue after an interruption)'
complete -c perch -n "__fish_perch_using_subcommand help; and __fish_seen_subcommand_from migrate" -f -a "out" -d 'Move this server\'s account to another PDS (run it again to continue after an interruption)'
complete -c perch -n "__fish_perch_using_subcommand help; and __fish_seen_subcommand_from seq" -f -a "bump" -d 'Move the sequence forward so the next event gets at least N (after restoring an old backup, relays must never see a seq twice)'
