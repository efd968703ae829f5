#!/usr/bin/env bash
# The long reliability runs of issue 9, then the figures table of the
# reliability plan (section 7) filled in from this run. Rows no harness
# measures yet say so.
#   CRASH_ROUNDS   kill -9 rounds (default 100)
#   CORRUPT_ROUNDS random byte-flip starts (default 200)
#   FUZZ_MINUTES   per fuzz target (default 10; 0 skips fuzzing)
#   POWERCUT_ROUNDS power cuts with unsynced data dropped, per sync mode (default 50)
#   FIREHOSE_STEPS random writes in the firehose frame check (default 1000)
#   ABUSE_*        sizes of the abuse and load runs (scripts/abuse.sh; rows 9-13, 15-21)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
# Panic messages, not backtraces, in the failure tails below.
export RUST_BACKTRACE=0
export ATPROTO_INTEROP_DIR=${ATPROTO_INTEROP_DIR:-$(cd .. && pwd)/shared/interop}
crash_rounds=${CRASH_ROUNDS:-100}
corrupt_rounds=${CORRUPT_ROUNDS:-200}
fuzz_minutes=${FUZZ_MINUTES:-10}
powercut_rounds=${POWERCUT_ROUNDS:-50}
firehose_steps=${FIREHOSE_STEPS:-1000}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

run() { # name, command...: keeps the log, reports failure, never stops the table
  local name=$1; shift
  echo "== $name" >&2
  if ! "$@" >"$out/$name.log" 2>&1; then
    # The whole log outlives the run: a rare failure must be explainable afterwards.
    mkdir -p target/reliability && cp "$out/$name.log" "target/reliability/$name.log"
    echo "   FAILED (log below; all of it in target/reliability/$name.log)" >&2
    tail -30 "$out/$name.log" >&2
    echo FAILED >"$out/$name.failed"
  fi
}
run crash env PERCH_CRASH_ROUNDS="$crash_rounds" cargo test --locked --test it crash:: -- --nocapture
run corrupt env PERCH_CORRUPT_ROUNDS="$corrupt_rounds" cargo test --locked --test it corrupt_db:: -- --nocapture
run jwt cargo test --locked --test it jwt_attacks:: -- --nocapture
run ssrf cargo test --locked --test it ssrf:: -- --nocapture
run powercut env POWERCUT_ROUNDS="$powercut_rounds" cargo test --locked --test it powercut:: -- --nocapture
run fiu cargo test --locked --test it fiu:: -- --nocapture
run restore cargo test --locked --test it restore_seq:: -- --nocapture
run car cargo test --locked --test it hostile_car:: -- --nocapture
run firehose env PERCH_FIREHOSE_STEPS="$firehose_steps" cargo test --locked --test it firehose_frames:: -- --nocapture
run abuse scripts/abuse.sh
if [ "$fuzz_minutes" -gt 0 ]; then
  cargo build --locked >/dev/null 2>&1 # the CAR seed comes from a real perch
  run fuzz env FUZZ_SECONDS=$((fuzz_minutes * 60)) scripts/fuzz-ci.sh
fi

field() { # log, line prefix, key → value
  sed -n "s/^$2.*[ ]$3=\([^ ]*\).*/\1/p" "$out/$1.log" 2>/dev/null | head -1
}
status() { [ -e "$out/$1.failed" ] && echo " **FAILED**"; }
nm="not measured yet"

c_rounds=$(field crash crash: rounds); c_acked=$(field crash crash: acked_writes)
c_lost=$(field crash crash: lost); c_int=$(field crash crash: integrity_ok)
c_seq=$(field crash crash: seq_regressions)
r_before=$(field restore restore: seq_before); r_after=$(field restore restore: first_seq_after)
r_reg=$(field restore restore: regressions)
restore_fig="restore test: $nm"
[ -n "$r_reg" ] && restore_fig="restore test: $r_reg (seq $r_before seen, first after restore $r_after; #identity + #sync sent, rev above)$(status restore)"
row1=$nm; row3="$restore_fig"
if [ -n "$c_rounds" ]; then
  row1="$c_lost lost of $c_acked acknowledged writes over $c_rounds kill -9 rounds; integrity_check ok $c_int$(status crash)"
  row3="$c_seq over $c_rounds kill -9 rounds; $restore_fig$(status crash)"
fi
p_rounds=$(field powercut "powercut: mode=full" rounds); p_acked=$(field powercut "powercut: mode=full" acked_writes)
p_lost=$(field powercut "powercut: mode=full" lost); p_int=$(field powercut "powercut: mode=full" integrity_ok)
n_rounds=$(field powercut "powercut: mode=normal" rounds); n_lost=$(field powercut "powercut: mode=normal" lost)
n_lossy=$(field powercut "powercut: mode=normal" lossy_rounds); n_acked=$(field powercut "powercut: mode=normal" acked_writes)
row2=$nm
[ -n "$p_rounds" ] && row2="FULL: $p_lost lost of $p_acked acknowledged writes over $p_rounds power cuts, integrity_check ok $p_int; NORMAL: $n_lost lost of $n_acked ($n_lossy of $n_rounds cuts lost writes)$(status powercut)"
f_points=$(field fiu fiu: points); f_200=$(field fiu fiu: ok_200); f_5xx=$(field fiu fiu: errors_5xx)
f_lost=$(field fiu fiu: lost_after_200); f_pan=$(field fiu fiu: panics); f_int=$(field fiu fiu: integrity_ok)
f_unh=$(field fiu fiu: unhealthy)
row4=$nm
[ -n "$f_points" ] && row4="$((f_lost + f_pan)) of $f_points Nth-call faults (fsync, write, open, rename; createRecord and uploadBlob): $f_200 answered 200, $f_5xx a clean 5xx, $f_lost lost after 200, $f_pan panics, integrity_check ok $f_int, $f_unh went read-only until restart$(status fiu)"
row5=$nm
if [ -e "$out/fuzz.log" ]; then
  row5=$(sed -n 's/^fuzz: target=\([^ ]*\) seconds=\([^ ]*\) execs=\([^ ]*\) crashes=\([^ ]*\)/\1 \3 runs \/ \4 crashes (\2 s);/p' "$out/fuzz.log" | tr '\n' ' ')
  row5="$row5 OOMs counted as crashes$(status fuzz)"
fi
m_n=$(field car car: cases); m_rej=$(field car car: rejected); m_db=$(field car car: db_unchanged)
row6=$nm
[ -n "$m_n" ] && row6="$m_rej of $m_n malformed repositories refused with a specific error; database unchanged after $m_db$(status car)"
s_urls=$(field ssrf "ssrf: client" requests); s_res=$(field ssrf "ssrf: resolution" lookups)
s_proxy=$(field ssrf "ssrf: proxy" targets)
row7=$nm
[ -n "$s_urls" ] && row7="0 connections (trap listener) for $s_urls client requests, $s_res did:web/PLC/handle lookups, $s_proxy proxy targets$(status ssrf)"
j_n=$(field jwt jwt: attacks); j_acc=$(field jwt jwt: accepted)
row8=$nm
[ -n "$j_n" ] && row8="$j_acc accepted of $j_n attack requests$(status jwt)"
k_n=$(field corrupt corrupt: flip_rounds); k_ref=$(field corrupt corrupt: refused)
k_srv=$(field corrupt corrupt: served)
row14=$nm
[ -n "$k_n" ] && row14="clear refusal, no panic: damaged header, truncated, garbage pages, foreign WAL, emptied file, foreign database; $k_n random flip starts: $k_ref refused, $k_srv served (flip in unused or payload bytes), 0 panics$(status corrupt)"

a() { field abuse "abuse: $1" "$2"; }
row9=$nm
if [ -n "$(a slowloris health_p99_ms)" ]; then
  row9="health p50 $(a slowloris health_p50_ms) ms, p99 $(a slowloris health_p99_ms) ms, max $(a slowloris health_max_ms) ms; $(a slowloris probes_answered) probes answered over $(a slowloris ran_s) s of $(a slowloris connections)-socket slowloris rounds on HTTPS from one address (the per-address cap of 64 held them; $(a slowloris rejected_by_caps) refused); RSS $(a slowloris rss_before_kib) → $(a slowloris rss_after_kib) KiB; server up: $(a slowloris server_up)$(status abuse)"
fi
row10=$nm
if [ -n "$(a idle_spread new_request_ms)" ]; then
  row10="$(a idle_spread sockets) silent sockets from $(a idle_spread sources) addresses: perch held $(a idle_spread perch_held) (total cap), a new client got $(a idle_spread new_request_status) in $(a idle_spread new_request_ms) ms; held ones closed after $(a idle_spread idle_lifetime_max_s) s at most; perch fds $(a idle_spread perch_fds_held), RSS $(a idle_spread rss_held_kib) KiB. From one address: $(a idle_one_source perch_held) held, new client $(a idle_one_source new_request_ms) ms$(status abuse)"
fi
row11=$nm
if [ -n "$(a fanout good_complete)" ]; then
  row11="$(a fanout good_complete) gap-free and in order ($(a fanout events) events, seq gaps $(a fanout seq_gaps)) / $(a fanout stalled_closed) stalled closed $(a fanout stalled_closed_s) s after subscribing (30 s send timeout; $(a fanout stalled_end)) / RSS +$(a fanout rss_growth_kib) KiB; write p99 $(a fanout write_p99_ms) ms$(status abuse)"
fi
row12=$nm
if [ -n "$(a reads_getrecord rps)" ]; then
  row12="getRecord $(a reads_getrecord rps) req/s, p99 $(a reads_getrecord p99_ms) ms, non-2xx $(a reads_getrecord non2xx) (wrk $(a reads_getrecord connections) conns, $(a reads_getrecord seconds) s; createRecord beside it p99 $(a reads_getrecord write_p99_ms) ms, $(a reads_getrecord writes_ok)); getBlob 1 MB over h2c $(a reads_getblob rps) req/s, p99 $(a reads_getblob p99_ms) ms, non-2xx $(a reads_getblob non2xx) (createRecord beside it p99 $(a reads_getblob write_p99_ms) ms); RSS peak $(a reads_getblob vmhwm_kib) KiB; Pi 4: $nm$(status abuse)"
fi
row13=$nm
if [ -n "$(a fsync fsyncs_per_write)" ]; then
  row13="$(a fsync fsyncs_per_write) fsync-family calls and $(a fsync disk_bytes_per_write) B to disk per createRecord ($(a fsync written_bytes_per_write) B through write(); $(a fsync writes) writes on $(a fsync fs))$(status abuse)"
fi
row15=$nm
if [ -n "$(a testssl medium_or_worse_ours)" ]; then
  row15="$(a testssl medium_or_worse_ours) of $(a testssl checks) checks (MEDIUM or worse from the throwaway test CA, not perch: $(a testssl medium_or_worse_all))$(status abuse)"
fi
row16=$nm
if [ -n "$(a stall_getrepo probes_answered)" ]; then
  row16="$(a stall_getrepo probes_answered) describeRepo/getLatestCommit answered (p99 $(a stall_getrepo probe_p99_ms) ms, max $(a stall_getrepo probe_max_ms) ms) beside $(a stall_getrepo clients) stalled getRepo readers of a 20 MB repo ($(a stall_getrepo exporting) exporting, $(a stall_getrepo refused_429) refused 429); whole getRepo afterwards: $(a stall_getrepo getrepo_after)$(status abuse)"
fi
row17=$nm
if [ -n "$(a h2_unfinished_bodies vmhwm_kib)" ]; then
  row17="peak RSS $(a h2_unfinished_bodies vmhwm_kib) KiB (from $(a h2_unfinished_bodies rss_before_kib)) with $(a h2_unfinished_bodies connections) h2c connections x 64 streams of unfinished 150 KB bodies ($(a h2_unfinished_bodies body_bytes_sent) body bytes taken in); login beside it: $(a h2_unfinished_bodies login_status) in $(a h2_unfinished_bodies login_ms) ms$(status abuse)"
fi
row18=$nm
if [ -n "$(a subscriber_flood new_request_status)" ]; then
  row18="$(a subscriber_flood subscribers) idle subscribers from $(a subscriber_flood sources) addresses: $(a subscriber_flood kept) kept, a new client got $(a subscriber_flood new_request_status) in $(a subscriber_flood new_request_ms) ms, a new subscriber got in: $(a subscriber_flood new_subscriber); RSS $(a subscriber_flood rss_held_kib) KiB$(status abuse)"
fi
row19=$nm
if [ -n "$(a h2_idle new_client_status)" ]; then
  row19="$(a h2_idle connections) HTTP/2 connections from $(a h2_idle sources) addresses idle after a request: a new client got $(a h2_idle new_client_status) in $(a h2_idle new_client_ms) ms$(status abuse)"
fi
row20=$nm
if [ -n "$(a guess_delete rss_peak_kib)" ]; then
  row20="createSession: peak RSS $(a guess_login rss_peak_kib) KiB (from $(a guess_login rss_before_kib)), describeRepo p99 $(a guess_login probe_p99_ms) ms ($(a guess_login probes_ok) answered, $(a guess_login probes_failed) failed), answers $(a guess_login statuses); deleteAccount: peak RSS $(a guess_delete rss_peak_kib) KiB, describeRepo p99 $(a guess_delete probe_p99_ms) ms, answers $(a guess_delete statuses)$(status abuse)"
fi
row21=$nm
if [ -n "$(a oracle answers_differ_by_password)" ]; then
  row21="answers differ by password: $(a oracle answers_differ_by_password); $(a oracle answered_before_first_429) of $(a oracle guesses) guesses answered before the first 429 ($(a oracle statuses))$(status abuse)"
fi

cat <<TABLE

| # | Figure | Target | perch ($(date -u +%Y-%m-%d), $(nproc) cores) |
|---|---|---|---|
| 1 | Acknowledged writes lost in kill -9 loop | **0**; integrity_check ok 100/100 | $row1 |
| 2 | Acknowledged writes lost after dropping unsynced data (synchronous=FULL) | **0**; >0 with NORMAL | $row2 |
| 3 | Seq regressions or duplicates across all crash runs and the restore test | **0** | $row3 |
| 4 | I/O fault points leading to 200-with-loss, panic or corruption | **0** | $row4 |
| 5 | Fuzz: inputs run per target / panics / OOMs | ≥ 1M each / **0** / **0** | $row5 |
| 6 | Malformed-CAR corpus rejections with DB unchanged | 100% | $row6 |
| 7 | SSRF corpus: private-address connections attempted | **0** | $row7 |
| 8 | JWT negative matrix accepted | **0** | $row8 |
| 9 | Slowloris 4000 sockets: health p99 | < 1 s, server up | $row9 |
| 10 | 10k idle sockets: new request served | yes, within 1 s | $row10 |
| 11 | Firehose 50 subs / 5 stalled | 100% / 100% / < 50 MB | $row11 |
| 12 | getRecord throughput, p99 | record; p99 < 500 ms | $row12 |
| 13 | fsyncs and bytes written per createRecord | ≤ 2 fsync, ≤ 64 KiB | $row13 |
| 14 | Startup with corrupt DB | clear refusal, no panic | $row14 |
| 15 | testssl findings rated medium or worse | **0** | $row15 |
| 16 | 16 stalled getRepo readers: reads answered | all, none slower than 10 s | $row16 |
| 17 | h2c 32 x 64 unfinished 150 KB bodies: peak RSS | < 96 MiB, login answered | $row17 |
| 18 | 1024 idle firehose subscribers: new client | served; new subscriber gets in | $row18 |
| 19 | 1024 idle HTTP/2 connections: new client | served | $row19 |
| 20 | Password guessing, 32 addresses x 4 at once for 20 s: peak RSS, reads | < 96 MiB; reads answered | $row20 |
| 21 | deleteAccount without a session as a password oracle | same answer whatever the password; rate-limited | $row21 |
TABLE
! ls "$out"/*.failed >/dev/null 2>&1
