-- wrk script for scripts/bench.sh. The mode and the request data come from
-- the environment:
--   BENCH_MODE   create | get | list | upload
--   BENCH_DID    the account's DID
--   BENCH_TOKEN  an access JWT (create, upload)
--   BENCH_BLOB_BYTES  the size of each uploadBlob body (upload; 1 MiB); every
--                body differs from the others in its first bytes, so no
--                upload is a duplicate the server already has
--   BENCH_RKEYS  a file of rkeys, one a line (get)
-- done() prints one line "BENCH_RESULT {json}" with the request count,
-- duration, latency percentiles (ms), socket errors and a count of each HTTP
-- status seen, plus the first body of a non-2xx answer per thread.

local mode = os.getenv("BENCH_MODE") or "list"
local did = os.getenv("BENCH_DID") or ""
local token = os.getenv("BENCH_TOKEN") or ""
local collection = "app.bsky.feed.post"
local blob_bytes = tonumber(os.getenv("BENCH_BLOB_BYTES") or "1048576")
local blob_tail = nil

local function urlencode(s)
  return (s:gsub("[^%w%-%._~]", function(c)
    return string.format("%%%02X", string.byte(c))
  end))
end

local function jsonstr(s)
  s = s:gsub('[%c"\\]', function(c)
    if c == '"' then return '\\"' end
    if c == "\\" then return "\\\\" end
    return string.format("\\u%04x", string.byte(c))
  end)
  return '"' .. s .. '"'
end

-- setup() runs in the main Lua state once per thread; keep the threads so
-- done() can read their counters.
local threads = {}
local next_id = 0
function setup(thread)
  next_id = next_id + 1
  thread:set("id", next_id)
  table.insert(threads, thread)
end

-- per-thread state (each wrk thread has its own Lua state); statuses and
-- sample are globals so that done() can read them with thread:get()
local paths = {}
local n = 0
local headers = {}
statuses = {}
sample = nil

function init(args)
  math.randomseed((id or 1) * 7919 + os.time())
  if mode == "create" then
    headers["Content-Type"] = "application/json"
    headers["Authorization"] = "Bearer " .. token
  elseif mode == "upload" then
    headers["Content-Type"] = "application/octet-stream"
    headers["Authorization"] = "Bearer " .. token
    local pattern = {}
    for i = 1, 256 do pattern[i] = string.char((i * 31 + 7) % 256) end
    local block = table.concat(pattern)
    blob_tail = string.sub(string.rep(block, math.ceil(blob_bytes / 256)), 33, blob_bytes)
  elseif mode == "get" then
    local file = assert(io.open(os.getenv("BENCH_RKEYS"), "r"))
    for line in file:lines() do
      if #line > 0 then
        table.insert(paths, "/xrpc/com.atproto.repo.getRecord?repo=" .. urlencode(did)
          .. "&collection=" .. collection .. "&rkey=" .. urlencode(line))
      end
    end
    file:close()
    assert(#paths > 0, "no rkeys in BENCH_RKEYS")
  else
    paths[1] = "/xrpc/com.atproto.repo.listRecords?repo=" .. urlencode(did)
      .. "&collection=" .. collection .. "&limit=50"
  end
end

function request()
  n = n + 1
  if mode == "create" then
    local body = '{"repo":' .. jsonstr(did) .. ',"collection":"' .. collection
      .. '","record":{"$type":"' .. collection .. '","text":"wrk ' .. tostring(id)
      .. ' ' .. tostring(n) .. '","createdAt":"2026-01-01T00:00:00.000Z"}}'
    return wrk.format("POST", "/xrpc/com.atproto.repo.createRecord", headers, body)
  elseif mode == "upload" then
    -- 32 bytes that no other request of this run or an earlier one has
    local head = string.format("%-32s", string.format("%d %d %d", id or 1, n, os.time()))
    return wrk.format("POST", "/xrpc/com.atproto.repo.uploadBlob", headers, head .. blob_tail)
  elseif mode == "get" then
    return wrk.format("GET", paths[math.random(#paths)])
  else
    return wrk.format("GET", paths[1])
  end
end

function response(status, hdrs, body)
  local k = tostring(status)
  statuses[k] = (statuses[k] or 0) + 1
  if (status < 200 or status > 299) and sample == nil then
    sample = string.sub(body or "", 1, 300)
  end
end

function done(summary, latency, requests)
  local counts = {}
  local samples = {}
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    if type(s) == "table" then
      for k, v in pairs(s) do counts[k] = (counts[k] or 0) + v end
    end
    local smp = t:get("sample")
    if smp then table.insert(samples, smp) end
  end
  local st = {}
  local ok = 0
  for k, v in pairs(counts) do
    table.insert(st, jsonstr(k) .. ":" .. v)
    local code = tonumber(k)
    if code >= 200 and code <= 299 then ok = ok + v end
  end
  local sm = {}
  for _, s in ipairs(samples) do table.insert(sm, jsonstr(s)) end
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"mode":%s,"requests":%d,"ok":%d,"seconds":%.3f,"rps":%.2f,"ok_rps":%.2f,'
      .. '"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f,"mean_ms":%.3f,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"statuses":{%s},"error_samples":[%s]}\n',
    jsonstr(mode), summary.requests, ok, secs, summary.requests / secs, ok / secs,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, latency.mean / 1000,
    e.connect, e.read, e.write, e.status, e.timeout,
    table.concat(st, ","), table.concat(sm, ",")))
end
