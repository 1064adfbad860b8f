-- wrk script for bench/pages.py: GET one path, optionally with If-None-Match.
--
-- Usage: wrk ... -s bench/get.lua URL -- PATH ETAG [FIRST_DELAY_MS CONNS_PER_THREAD]
--   ETAG  the If-None-Match value to send, or "-" for none
-- FIRST_DELAY_MS and CONNS_PER_THREAD and the BENCH_JSON line are as in register.lua.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  path = args[1] or "/"
  local etag = args[2] or "-"
  headers = {}
  if etag ~= "-" then
    headers["If-None-Match"] = etag
  end
  statuses = {}
  first_delay = tonumber(args[3] or "0") or 0
  held_back = tonumber(args[4] or "0") or 0
  delays = 0
end

function delay()
  delays = delays + 1
  if delays <= held_back then
    return first_delay
  end
  return 0
end

function request()
  return wrk.format("GET", path, headers)
end

function response(status, hdrs, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local all = {}
  for _, thread in ipairs(threads) do
    local seen = thread:get("statuses") or {}
    for code, n in pairs(seen) do
      all[code] = (all[code] or 0) + n
    end
  end
  local parts = {}
  for code, n in pairs(all) do
    table.insert(parts, string.format('"%d":%d', code, n))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"statuses":{%s},"latency_us":{"p50":%d,"p75":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout, table.concat(parts, ","),
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean
  ))
end
