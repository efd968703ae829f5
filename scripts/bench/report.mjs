// Turns the metrics that scripts/bench.sh collected into a table (stdout)
// and a JSON file. Node builtins only.
//
//   node report.mjs METRICS.tsv OUT.json
//
// METRICS.tsv has one "server<TAB>key<TAB>json" line per figure; server is
// "machine", "perch" or "reference".
//
// Ratios are "times better for perch": perch / reference for rates,
// reference / perch for latencies, memory, start time and fsyncs. Targets are
// reported (met or not), never asserted: the exit status is 0 either way.
import { readFileSync, writeFileSync } from 'node:fs'

const [tsv, outFile] = process.argv.slice(2)
if (!tsv || !outFile) {
  console.error('usage: node report.mjs METRICS.tsv OUT.json')
  process.exit(2)
}

const raw = { machine: {}, perch: {}, reference: {} }
for (const line of readFileSync(tsv, 'utf8').split('\n')) {
  if (!line.trim()) continue
  const [server, key, ...rest] = line.split('\t')
  const text = rest.join('\t')
  let value
  try {
    value = JSON.parse(text)
  } catch {
    value = text
  }
  ;(raw[server] ??= {})[key] = value
}
const hasRef = Object.keys(raw.reference).length > 0
const m = raw.machine

const median = (xs) => {
  if (!Array.isArray(xs) || xs.length === 0) return null
  const s = [...xs].sort((a, b) => a - b)
  const mid = s.length >> 1
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2
}
const mib = (kib) => (typeof kib === 'number' ? kib / 1024 : null)

function derive(r) {
  if (!r || Object.keys(r).length === 0) return null
  const d = {}
  const wrk = (phase, field) => r[phase]?.[field] ?? null
  for (const phase of ['create_seq', 'create_c8', 'get_c8', 'list_c8']) {
    d[`${phase}_rps`] = wrk(phase, 'ok_rps')
    d[`${phase}_p50_ms`] = wrk(phase, 'p50_ms')
    d[`${phase}_p99_ms`] = wrk(phase, 'p99_ms')
    d[`${phase}_max_ms`] = wrk(phase, 'max_ms')
    const e = r[phase]?.errors ?? {}
    const failed = (wrk(phase, 'requests') ?? 0) - (wrk(phase, 'ok') ?? 0)
    const cpu = (r[`after_${phase}_cpu_ms`] ?? NaN) - (r[`before_${phase}_cpu_ms`] ?? NaN)
    const reqs = wrk(phase, 'requests')
    d[`${phase}_cpu_us_per_req`] = Number.isFinite(cpu) && reqs > 0 ? (1000 * cpu) / reqs : null
    d[`${phase}_failed`] = failed + (e.connect ?? 0) + (e.read ?? 0) + (e.write ?? 0) + (e.timeout ?? 0)
  }
  d.idle_rss_mib = mib(r.idle_rss_kib)
  d.idle_anon_mib = mib(r.idle_anon_kib)
  d.login_hwm_mib = mib(r.idle_hwm_kib)
  // after login the HWM was reset (clear_refs), so load_hwm is the peak of
  // the load phases alone; without the reset it is the lifetime peak
  d.peak_rss_load_mib = r.hwm_reset_after_login === true ? mib(r.load_hwm_kib) : null
  d.peak_rss_lifetime_mib =
    r.hwm_reset_after_login === true
      ? Math.max(mib(r.idle_hwm_kib) ?? 0, mib(r.load_hwm_kib) ?? 0)
      : mib(r.load_hwm_kib)
  d.rss_after_load_mib = mib(r.load_rss_kib)
  d.threads_idle = r.idle_threads ?? null
  d.threads_after_load = r.load_threads ?? null
  d.cold_start_ms = median(r.cold_start_ms_runs)
  const n = m.fsync_writes
  const base = r.fsync_run_0_calls ?? {}
  const load = r[`fsync_run_${n}_calls`] ?? {}
  const okWrites = r[`fsync_run_${n}_writes`]?.ok ?? 0
  const sum = (o) => (o.fsync ?? 0) + (o.fdatasync ?? 0)
  d.fsync_per_commit = okWrites > 0 ? (sum(load) - sum(base)) / okWrites : null
  d.fsync_only_per_commit = okWrites > 0 ? ((load.fsync ?? 0) - (base.fsync ?? 0)) / okWrites : null
  d.fdatasync_per_commit = okWrites > 0 ? ((load.fdatasync ?? 0) - (base.fdatasync ?? 0)) / okWrites : null
  d.fsync_writes_ok = okWrites
  const disk = m.disk_fsync?.fsyncs_per_sec
  d.create_seq_pct_of_disk_fsync = disk && d.create_seq_rps != null ? (100 * d.create_seq_rps) / disk : null
  d.alive_after_load = r.alive_after_load ?? null
  // records written during the load: both create phases and the top-up
  d.records_written = (wrk('create_seq', 'ok') ?? 0) + (wrk('create_c8', 'ok') ?? 0) + (r.rkeys_created ?? 0)
  d.data_dir_mib = typeof r.data_dir_bytes === 'number' ? r.data_dir_bytes / 1048576 : null
  d.bytes_per_record =
    typeof r.data_dir_bytes === 'number' && d.records_written > 0
      ? (r.data_dir_bytes - (r.template_dir_bytes ?? 0)) / d.records_written
      : null
  d.get_repo_ms = r.get_repo?.ms ?? null
  d.get_repo_mb_per_s = r.get_repo?.mb_per_s ?? null
  d.get_repo_ttfb_ms = r.get_repo?.ttfb_ms ?? null
  const blobRps = wrk('upload_blob', 'ok_rps')
  d.upload_blob_mib_per_s = blobRps == null ? null : (blobRps * (r.upload_blob_bytes ?? 1048576)) / 1048576
  d.upload_blob_p99_ms = wrk('upload_blob', 'p99_ms')
  d.get_repo_mb = typeof r.get_repo?.bytes === 'number' ? r.get_repo.bytes / 1e6 : null
  d.get_repo_blocks = r.get_repo?.blocks ?? null
  d.repo_fill_records_per_s = r.repo_fill?.seconds > 0 ? r.repo_fill.created / r.repo_fill.seconds : null
  for (const n of [1, 10]) {
    const f = r[`firehose_${n}`]
    d[`firehose_${n}_p50_ms`] = f?.p50_ms ?? null
    d[`firehose_${n}_p99_ms`] = f?.p99_ms ?? null
    d[`firehose_${n}_max_ms`] = f?.max_ms ?? null
    d[`firehose_${n}_write_p50_ms`] = f?.write_p50_ms ?? null
    d[`firehose_${n}_ack_p99_ms`] = f?.frame_after_response_p99_ms ?? null
    d[`firehose_${n}_problems`] = f
      ? (f.missing ?? 0) + (f.out_of_order ?? 0) + (f.gaps ?? 0) + (f.duplicates ?? 0) + (f.decode_errors ?? 0) +
        (f.error_frames?.length ?? 0) + (f.closed_early ?? 0) + (f.wrong_repo ?? 0) + (f.writes - f.ok_writes)
      : null
  }
  d.rss_by_phase = Object.fromEntries(
    ['idle', 'after_create_seq', 'after_create_c8', 'after_get_c8', 'after_list_c8'].map((p) => [
      p,
      { rss_mib: mib(r[`${p}_rss_kib`]), threads: r[`${p}_threads`] ?? null },
    ]),
  )
  return d
}

const P = derive(raw.perch)
const R = hasRef ? derive(raw.reference) : null

// key, label, unit, better (higher|lower), target {kind, value}
const ROWS = [
  ['create_seq_rps', 'createRecord/s, 1 writer', '/s', 'higher', { kind: 'ratio>=', value: 20 }],
  ['create_seq_p50_ms', '  p50', 'ms', 'lower'],
  ['create_seq_p99_ms', '  p99', 'ms', 'lower'],
  ['create_seq_cpu_us_per_req', '  server CPU per request', 'µs', 'lower', { kind: 'perch<=', value: 250 }],
  ['create_seq_pct_of_disk_fsync', '  as % of disk fsync/s', '%', 'higher', { kind: 'perch>=', value: 80 }],
  ['create_c8_rps', 'createRecord/s, 8 writers', '/s', 'higher', { kind: 'ratio>=', value: 40 }],
  ['create_c8_p50_ms', '  p50', 'ms', 'lower'],
  ['create_c8_p99_ms', '  p99', 'ms', 'lower'],
  ['create_c8_cpu_us_per_req', '  server CPU per request', 'µs', 'lower'],
  ['get_c8_rps', 'getRecord/s, 8 conns', '/s', 'higher', { kind: 'ratio>=', value: 30 }],
  ['get_c8_p50_ms', '  p50', 'ms', 'lower'],
  ['get_c8_p99_ms', '  p99', 'ms', 'lower'],
  ['get_c8_cpu_us_per_req', '  server CPU per request', 'µs', 'lower'],
  ['list_c8_rps', 'listRecords/s (limit 50), 8 conns', '/s', 'higher', { kind: 'ratio>=', value: 20 }],
  ['list_c8_p50_ms', '  p50', 'ms', 'lower'],
  ['list_c8_p99_ms', '  p99', 'ms', 'lower'],
  ['list_c8_cpu_us_per_req', '  server CPU per request', 'µs', 'lower'],
  ['idle_rss_mib', 'idle RSS (after start + login)', 'MiB', 'lower', { kind: 'perch<=', value: 6 }],
  ['idle_anon_mib', '  of it the process\'s own (RssAnon)', 'MiB', 'lower'],
  ['peak_rss_load_mib', 'peak RSS under load', 'MiB', 'lower', { kind: 'perch<=', value: 24 }],
  ['login_hwm_mib', 'peak RSS start + login', 'MiB', 'lower'],
  ['rss_after_load_mib', 'RSS after load', 'MiB', 'lower'],
  ['threads_after_load', 'threads after load', '', 'lower'],
  ['cold_start_ms', `cold start to healthy (median of ${m.cold_runs ?? '?'})`, 'ms', 'lower', { kind: 'perch<=', value: 10 }],
  ['fsync_per_commit', 'fsync+fdatasync per commit', '', 'lower', { kind: 'perch==', value: 1 }],
  ['get_repo_ms', `getRepo, ${m.repo_records ?? '?'}-record repo (median of 3)`, 'ms', 'lower', [{ kind: 'perch<=', value: 20 }, { kind: 'ratio>=', value: 30 }]],
  ['get_repo_ttfb_ms', '  time to the first bytes', 'ms', 'lower'],
  ['get_repo_mb_per_s', '  throughput (10^6 B/s)', 'MB/s', 'higher'],
  ['get_repo_mb', '  CAR size', 'MB', 'lower'],
  ['repo_fill_records_per_s', '  records/s writing it (applyWrites x200)', '/s', 'higher'],
  ['firehose_1_p50_ms', `write→firehose, 1 subscriber, p50 (${m.firehose_writes ?? '?'} writes)`, 'ms', 'lower'],
  ['firehose_1_p99_ms', '  p99', 'ms', 'lower'],
  ['firehose_1_write_p50_ms', '  createRecord response p50', 'ms', 'lower'],
  ['firehose_1_ack_p99_ms', '  frame after the response (ack→frame), p99', 'ms', 'lower', { kind: 'perch<=', value: 1 }],
  ['firehose_10_p50_ms', `write→firehose, 10 subscribers, p50 (${m.firehose_writes ?? '?'} writes)`, 'ms', 'lower'],
  ['firehose_10_p99_ms', '  p99', 'ms', 'lower'],
  ['firehose_10_write_p50_ms', '  createRecord response p50', 'ms', 'lower'],
  ['firehose_10_ack_p99_ms', '  frame after the response (ack→frame), p99', 'ms', 'lower', { kind: 'perch<', value: 5, text: 'p99 < 5 ms' }],
  ['firehose_problems', 'firehose missing/out-of-order/gap/error frames', '', 'lower'],
  ['upload_blob_mib_per_s', 'uploadBlob, 1 MiB sequential', 'MiB/s', 'higher', { kind: 'ratio>=', value: 4 }],
  ['records_written', 'records written by the load', '', 'higher'],
  ['data_dir_mib', 'data dir after the load', 'MiB', 'lower'],
  ['bytes_per_record', 'data dir growth per record written', 'B', 'lower'],
  ['failed_total', 'failed requests (non-2xx, socket errors)', '', 'lower'],
]
for (const d of [P, R]) {
  if (d) {
    const ps = [d.firehose_1_problems, d.firehose_10_problems].filter((x) => typeof x === 'number')
    d.firehose_problems = ps.length ? ps.reduce((a, b) => a + b, 0) : null
  }
  if (d) d.failed_total = ['create_seq', 'create_c8', 'get_c8', 'list_c8'].reduce((a, p) => a + (d[`${p}_failed`] ?? 0), 0)
}

function ratio(key, better) {
  if (!R) return null
  const p = P[key]
  const r = R[key]
  if (typeof p !== 'number' || typeof r !== 'number') return null
  if (better === 'higher') return r > 0 ? p / r : null
  return p > 0 ? r / p : null
}

function targetMet(t, key, rat) {
  if (!t) return null
  if (Array.isArray(t)) {
    const met = t.map((x) => targetMet(x, key, rat))
    return met.includes(null) ? null : met.every(Boolean)
  }
  const p = P[key]
  switch (t.kind) {
    case 'perch>=':
      return typeof p === 'number' ? p >= t.value : null
    case 'perch<=':
      return typeof p === 'number' ? p <= t.value : null
    case 'perch<':
      return typeof p === 'number' ? p < t.value : null
    case 'perch==':
      return typeof p === 'number' ? Math.abs(p - t.value) < 0.005 : null
    case 'ratio>=':
      return typeof rat === 'number' ? rat >= t.value : null
  }
  return null
}
const targetText = (t) => {
  if (!t) return ''
  if (Array.isArray(t)) return t.map(targetText).join(', ')
  if (t.text) return t.text
  const op = t.kind.replace(/^(perch|ratio)/, '').replace('>=', '≥ ').replace('<=', '≤ ').replace('==', '= ')
  return t.kind.startsWith('ratio') ? `${op}${t.value}×` : `${op}${t.value}`
}

const rows = ROWS.map(([key, label, unit, better, target]) => {
  const rat = ratio(key, better)
  return {
    key,
    metric: label.trim(),
    unit,
    better,
    perch: P?.[key] ?? null,
    reference: R?.[key] ?? null,
    ratio: rat,
    target: target ? targetText(target) : null,
    target_met: targetMet(target, key, rat),
  }
})

const fmt = (v, unit) => {
  if (v === null || v === undefined) return '-'
  if (typeof v !== 'number') return String(v)
  if (unit === '/s') return v >= 100 ? v.toFixed(0) : v.toFixed(1)
  if (unit === 'ms') return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)
  if (unit === 'MiB' || unit === 'MB' || unit === 'MB/s') return v.toFixed(1)
  if (unit === '%' || unit === 'B' || unit === 'µs') return v.toFixed(0)
  if (Number.isInteger(v)) return String(v)
  return v.toFixed(2)
}
const table = [['metric', 'unit', 'perch', 'reference', 'ratio (× perch better)', 'target']]
for (const [i, row] of rows.entries()) {
  const label = ROWS[i][1]
  const tgt = row.target ? `${row.target} ${row.target_met === null ? '?' : row.target_met ? 'met' : 'MISSED'}` : ''
  table.push([
    label,
    row.unit,
    fmt(row.perch, row.unit),
    hasRef ? fmt(row.reference, row.unit) : '-',
    row.ratio === null ? '-' : `${row.ratio >= 100 ? row.ratio.toFixed(0) : row.ratio.toFixed(1)}×`,
    tgt,
  ])
}
const widths = table[0].map((_, c) => Math.max(...table.map((r) => [...r[c]].length)))
const line = (r) => '| ' + r.map((cell, c) => (c >= 2 && c <= 4 ? cell.padStart(widths[c]) : cell.padEnd(widths[c]))).join(' | ') + ' |'
console.log()
console.log(`${m.perch_version ?? 'perch'} vs ${hasRef ? `@atproto/pds ${m.reference_version}` : '(no reference: --perch-only)'}`)
console.log(
  `machine: ${m.nproc} cores, kernel ${m.kernel}; disk: ${fmt(m.disk_fsync?.fsyncs_per_sec, '/s')} fsync/s (4 KiB append + fsync); ` +
    `${m.duration_s} s per load phase; wrk shares the cores with the server`,
)
console.log(`load average at start ${m.loadavg_start ?? '?'}, at end ${m.loadavg_end ?? '?'} (other work on the machine skews the figures)`)
console.log(line(table[0]))
console.log('|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|')
for (const r of table.slice(1)) console.log(line(r))
for (const [name, d] of [['perch', P], ['reference', R]]) {
  if (!d) continue
  const detail = `fsync ${fmt(d.fsync_only_per_commit)} + fdatasync ${fmt(d.fdatasync_per_commit)} per commit over ${d.fsync_writes_ok} writes`
  console.log(`${name}: ${detail}; served a write after the load: ${d.alive_after_load}`)
  const phases = Object.entries(d.rss_by_phase)
    .map(([p, v]) => `${p.replace('after_', '')} ${fmt(v.rss_mib, 'MiB')} MiB/${v.threads ?? '?'} thr`)
    .join(', ')
  console.log(`${name}: RSS and threads by phase: ${phases}`)
  const gr = (name === 'perch' ? raw.perch : raw.reference)?.get_repo
  if (gr) console.log(`${name}: getRepo ${gr.bytes} bytes, ${gr.blocks} blocks, runs ${gr.ms_runs.map((x) => fmt(x, 'ms')).join('/')} ms`)
  for (const n of [1, 10]) {
    const f = (name === 'perch' ? raw.perch : raw.reference)?.[`firehose_${n}`]
    if (!f) continue
    console.log(
      `${name}: firehose x${n}: ${f.ok_writes}/${f.writes} writes, ${f.samples} samples, max ${fmt(f.max_ms, 'ms')} ms; ` +
        (f.frame_after_response_p50_ms != null
          ? `frame after the createRecord response p50 ${fmt(f.frame_after_response_p50_ms, 'ms')} / p99 ${fmt(f.frame_after_response_p99_ms, 'ms')} ms, ${f.frames_before_response} frames before it; `
          : '') +
        `missing ${f.missing}, out of order ${f.out_of_order}, gaps ${f.gaps}, duplicates ${f.duplicates}, ` +
        `decode errors ${f.decode_errors}, error frames ${f.error_frames.length}, closed early ${f.closed_early}, ` +
        `other frames ${JSON.stringify(f.other_frames)}, unmatched commits ${f.unmatched_commit_frames}`,
    )
  }
}

const result = {
  generated_at: new Date().toISOString(),
  machine: m,
  rows,
  derived: { perch: P, reference: R },
  raw: { perch: raw.perch, reference: hasRef ? raw.reference : null },
}
writeFileSync(outFile, JSON.stringify(result, null, 2) + '\n')
